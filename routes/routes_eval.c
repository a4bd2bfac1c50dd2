/* routes_eval.c - evaluating compiled routes against one message.
 *
 * Everything allocated here comes from the caller's arena.  Filters read the
 * message as received; every matching route with transforms works on its own
 * shallow copy of the tree (a new segment array; field arrays are copied on
 * first write by hl7_edit.c), so routes never see each other's changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "cad_error.h"
#include "routes_int.h"

/* ---- failures ----------------------------------------------------------- */

int cad__step_fail(cad__ev_t *e, int rc, int hl7, const cad_hl7_match_t *mt,
                   const cad_hl7_path_t *p, const char *why) {
  cad_hl7_diag_t *d = &e->res->diag;
  memset(d, 0, sizeof *d);
  d->code = rc;
  d->hl7_code = hl7;
  if (mt && p) {
    d->segment = mt->seg_index + 1;
    memcpy(d->seg_id, p->seg, 4);
    d->field = p->field > 0 ? (uint32_t)p->field : 0;
    if (e->m->segs && mt->seg_index < e->m->nsegs && e->m->segs[mt->seg_index].offset != UINT32_MAX)
      d->offset = e->m->segs[mt->seg_index].offset;
  }
  snprintf(d->reason, sizeof d->reason, "%s", why);
  e->hl7_code = hl7;
  e->rc = rc;
  return rc;
}

int cad__internal(cad__ev_t *e, int rc) {
  return cad__step_fail(
      e, rc, 207, NULL, NULL,
      rc == CAD_E_NOMEM ? "out of memory while routing" : "cannot apply the change");
}

/* ---- values ------------------------------------------------------------- */

static bool parse_number(cad_str_t v, double *out) {
  char buf[64];
  size_t i = 0, j = v.len;
  while (i < j && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
  while (j > i && (v.p[j - 1] == ' ' || v.p[j - 1] == '\t')) j--;
  if (j == i || j - i >= sizeof buf) return false;
  /* Decimal only: digits, one point, a leading sign (no hex, no exponent). */
  bool dig = false, dot = false;
  for (size_t k = i; k < j; k++) {
    char c = v.p[k];
    if (c >= '0' && c <= '9') dig = true;
    else if (c == '.' && !dot) dot = true;
    else if ((c == '+' || c == '-') && k == i) continue;
    else return false;
  }
  if (!dig) return false;
  memcpy(buf, v.p + i, j - i);
  buf[j - i] = 0;
  *out = strtod(buf, NULL);
  return true;
}

/* ---- conditions --------------------------------------------------------- */

static int op_holds(cad__ev_t *e, const cad__op_t *op, cad_hl7_kind_t kind, cad_str_t v) {
  switch (op->kind) {
    case OP_EXISTS: return (kind == CAD_HL7_VALUE) == op->flag;
    case OP_EMPTY: return (kind != CAD_HL7_VALUE) == op->flag;
    case OP_EQUALS: return cad_str_eq(v, op->s);
    case OP_NOT_EQUALS: return !cad_str_eq(v, op->s);
    case OP_PREFIX: return v.len >= op->s.len && memcmp(v.p, op->s.p, op->s.len) == 0;
    case OP_IN:
      for (size_t i = 0; i < op->nlist; i++)
        if (cad_str_eq(v, op->list[i])) return 1;
      return 0;
    case OP_IN_TABLE: return cad__table_get(op->table, v.p, v.len, NULL);
    case OP_MATCHES: {
      char *s = cad_arena_dup(e->a, v.p, v.len);
      if (!s) return cad__internal(e, CAD_E_NOMEM);
      if (strlen(s) != v.len) return 0; /* an embedded NUL never matches */
      return regexec(op->re, s, 0, NULL, 0) == 0;
    }
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
      double x;
      if (!parse_number(v, &x)) return 0;
      if (op->kind == OP_LT) return x < op->num;
      if (op->kind == OP_LE) return x <= op->num;
      if (op->kind == OP_GT) return x > op->num;
      return x >= op->num;
    }
    case OP_BEFORE:
    case OP_AFTER: {
      cad_hl7_dtm_t t;
      if (!cad_hl7_dtm_parse(v.p, v.len, &t)) return 0;
      int c = cad_hl7_dtm_cmp(&t, &op->dtm);
      return op->kind == OP_BEFORE ? c < 0 : c > 0;
    }
  }
  return 0;
}

static int ops_hold(cad__ev_t *e, const cad__cond_t *k, const cad_hl7_path_t *p,
                    const cad_hl7_match_t *mt) {
  cad_hl7_kind_t kind = cad_hl7_kind(mt);
  cad_str_t v = {"", 0};
  bool have = false;
  for (size_t i = 0; i < k->nops; i++) {
    const cad__op_t *op = &k->ops[i];
    if (!have && op->kind != OP_EXISTS && op->kind != OP_EMPTY) {
      if (!cad_hl7_value(p, mt, e->a, &v)) return cad__internal(e, CAD_E_NOMEM);
      have = true;
    }
    int h = op_holds(e, op, kind, v);
    if (h <= 0) return h;
  }
  return 1;
}

int cad__cond_eval(cad__ev_t *e, const cad__cond_t *k, const cad__ctx_t *cx) {
  switch (k->kind) {
    case C_NOT: {
      int h = cad__cond_eval(e, k->kids[0], cx);
      return h < 0 ? h : !h;
    }
    case C_ALL:
      for (size_t i = 0; i < k->nkids; i++) {
        int h = cad__cond_eval(e, k->kids[i], cx);
        if (h <= 0) return h;
      }
      return 1;
    case C_ANY:
      for (size_t i = 0; i < k->nkids; i++) {
        int h = cad__cond_eval(e, k->kids[i], cx);
        if (h != 0) return h;
      }
      return 0;
    case C_LEAF: {
      cad_hl7_path_t p = cad__ctx_path(&k->path, cx);
      if (p.occ != CAD_HL7_ALL && p.rep != CAD_HL7_ALL) {
        /* One match at most (or none: an absent value), as the loop below. */
        cad_hl7_match_t mt;
        cad_hl7_get(e->m, &p, &mt);
        return ops_hold(e, k, &p, &mt);
      }
      cad_hl7_iter_t it;
      cad_hl7_match_t mt;
      cad_hl7_iter_init(&it, e->m, &p);
      int n = 0;
      while (cad_hl7_iter_next(&it, &mt)) {
        n++;
        int h = ops_hold(e, k, &p, &mt);
        if (h < 0) return h;
        if (k->quant_all && !h) return 0;
        if (!k->quant_all && h) return 1;
      }
      if (n == 0) {
        /* The segment does not occur: judge the operators on an absent value. */
        memset(&mt, 0, sizeof mt);
        mt.d = &e->m->d;
        return ops_hold(e, k, &p, &mt);
      }
      return k->quant_all ? 1 : 0;
    }
  }
  return 0;
}

/* ---- messages in the arena ---------------------------------------------- */

static int clone_msg(const cad_hl7_msg_t *src, cad_arena_t *a, cad_hl7_msg_t *dst) {
  *dst = *src;
  dst->arena = a;
  uint32_t cap = src->nsegs + 4;
  dst->segs = cad_arena_alloc(a, (size_t)cap * sizeof *dst->segs);
  if (!dst->segs) return CAD_E_NOMEM;
  if (src->nsegs) memcpy(dst->segs, src->segs, (size_t)src->nsegs * sizeof *dst->segs);
  dst->segs_cap = cap;
  /* Field arrays stay shared until written: copy on write. */
  for (uint32_t i = 0; i < dst->nsegs; i++) dst->segs[i].fields_cap = 0;
  return 0;
}

int cad_routes_serialize(const cad_hl7_msg_t *m, cad_arena_t *a, cad_str_t *out) {
  if (!m->dirty) {
    const char *p = m->input.p;
    size_t n = m->input.len;
    if (!memchr(p, '\n', n)) {
      out->p = p;
      out->len = n;
      return 0;
    }
    char *buf = cad_arena_alloc(a, n + 1);
    if (!buf) return CAD_E_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
      if (p[i] == '\n') {
        if (!(i > 0 && p[i - 1] == '\r')) buf[o++] = '\r';
      } else {
        buf[o++] = p[i];
      }
    }
    out->p = buf;
    out->len = o;
    return 0;
  }
  size_t total = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    total += cad_hl7_seg_size(&m->segs[i]) + 1;
  }
  char *buf = cad_arena_alloc(a, total + 1);
  if (!buf) return CAD_E_NOMEM;
  size_t o = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    o += cad_hl7_seg_write(&m->segs[i], buf + o);
    buf[o++] = '\r';
  }
  out->p = buf;
  out->len = o;
  return 0;
}

/* ---- evaluation --------------------------------------------------------- */

const char *cad_route_disposition_name(cad_route_disposition_t d) {
  switch (d) {
    case CAD_ROUTE_DELIVER: return "deliver";
    case CAD_ROUTE_FILTERED: return "filtered";
    case CAD_ROUTE_REJECTED: return "rejected";
    case CAD_ROUTE_ERROR: return "error";
    case CAD_ROUTE_DEAD_LETTER: return "dead_letter";
  }
  return "?";
}

static void set_error(const cad_routes_t *r, cad_route_result_t *res, int route, int step) {
  res->disposition = r->on_error == ON_ERROR_DEAD_LETTER ? CAD_ROUTE_DEAD_LETTER : CAD_ROUTE_ERROR;
  res->nouts = 0;
  res->unrouted = false;
  res->route = route;
  res->step = step;
  /* Say which route and step, ahead of the step's own reason. */
  char tmp[256];
  int n = snprintf(tmp, sizeof tmp, "route %.24s step %d: ", r->routes[route].name, step);
  size_t room = sizeof res->diag.reason - 1, have = n > 0 ? (size_t)n : 0;
  size_t add = strnlen(res->diag.reason, sizeof res->diag.reason);
  if (have + add >= sizeof tmp) add = sizeof tmp - have - 1;
  memcpy(tmp + have, res->diag.reason, add);
  have += add;
  if (have > room) have = room;
  memcpy(res->diag.reason, tmp, have);
  res->diag.reason[have] = 0;
}

int cad_routes_eval(const cad_routes_t *r, const char *bytes, size_t len,
                    const cad_hl7_msg_t *parsed, cad_arena_t *arena, cad_route_result_t *res) {
  memset(res, 0, sizeof *res);
  res->route = -1;
  cad_hl7_msg_t local;
  if (!parsed) {
    int rc = cad_hl7_parse(&local, bytes, len, arena, NULL, &res->diag);
    if (rc == CAD_E_NOMEM) {
      res->disposition = CAD_ROUTE_ERROR;
      res->diag.hl7_code = 207;
      snprintf(res->diag.reason, sizeof res->diag.reason, "out of memory while routing");
      return rc;
    }
    if (rc) {
      res->disposition = CAD_ROUTE_REJECTED;
      return 0;
    }
    parsed = &local;
  }
  cad__ev_t e = {r, arena, (cad_hl7_msg_t *)parsed, res, 0, 0, NULL};
  res->outs = cad_arena_alloc(arena, r->max_outs * sizeof *res->outs);
  if (!res->outs) goto nomem;
  bool matched = false;
  cad_str_t original = {NULL, 0};
  for (size_t i = 0; i < r->nroutes; i++) {
    const cad__route_t *rt = &r->routes[i];
    e.m = (cad_hl7_msg_t *)parsed; /* filters only read */
    if (rt->when) {
      int h = cad__cond_eval(&e, rt->when, &CAD__NO_CTX);
      if (h < 0) goto internal_err;
      if (!h) continue;
    }
    matched = true;
    cad_str_t out;
    if (rt->nsteps) {
      cad_hl7_msg_t copy;
      cad_arena_mark_t mark = cad_arena_mark(arena);
      if (clone_msg(parsed, arena, &copy)) goto nomem;
      e.m = &copy;
      size_t failed = 0;
      int rc = cad__steps_apply(&e, rt, !r->stepwise, &failed);
      if (rc == CAD__REDO) {
        /* A fused run gave up: step by step, from the message as it was,
         * with the memory the attempt took given back. */
        cad_arena_rewind(arena, mark);
        if (clone_msg(parsed, arena, &copy)) goto nomem;
        memset(&res->diag, 0, sizeof res->diag);
        e.rc = e.hl7_code = 0;
        rc = cad__steps_apply(&e, rt, false, &failed);
      }
      if (rc < 0) {
        set_error(r, res, (int)i, (int)failed + 1);
        return e.hl7_code == 207 && e.rc == CAD_E_NOMEM ? CAD_E_NOMEM : 0;
      }
      if (cad_routes_serialize(&copy, arena, &out)) goto nomem;
    } else {
      if (!original.p && cad_routes_serialize(parsed, arena, &original)) goto nomem;
      out = original;
    }
    for (size_t d = 0; d < rt->nto; d++) {
      cad_route_out_t *o = &res->outs[res->nouts++];
      o->dest = rt->to[d];
      o->route = i;
      o->bytes = out;
    }
    if (!rt->cont) break;
  }
  if (matched) {
    res->disposition = CAD_ROUTE_DELIVER;
    return 0;
  }
  switch (r->unrouted) {
    case UNROUTED_DEST:
      if (cad_routes_serialize(parsed, arena, &original)) goto nomem;
      res->disposition = CAD_ROUTE_DELIVER;
      res->unrouted = true;
      res->outs[0].dest = r->unrouted_dest;
      res->outs[0].route = (size_t)-1;
      res->outs[0].bytes = original;
      res->nouts = 1;
      return 0;
    case UNROUTED_REJECT:
      res->disposition = CAD_ROUTE_REJECTED;
      res->diag.code = CAD_E_NOTFOUND;
      res->diag.hl7_code = 200;
      snprintf(res->diag.reason, sizeof res->diag.reason, "no route accepts this message");
      return 0;
    default: res->disposition = CAD_ROUTE_FILTERED; return 0;
  }
nomem:
  e.rc = CAD_E_NOMEM;
internal_err:
  res->disposition = CAD_ROUTE_ERROR;
  res->nouts = 0;
  res->diag.code = e.rc ? e.rc : CAD_E_NOMEM;
  res->diag.hl7_code = 207;
  snprintf(res->diag.reason, sizeof res->diag.reason, "out of memory while routing");
  return res->diag.code;
}

void cad_routes_set_stepwise(cad_routes_t *r, bool on) { r->stepwise = on; }

/* ---- standalone conditions (routes.h: cad_route_cond_*) ---------------- */

int cad_route_cond_eval(const cad_route_cond_t *k, const cad_hl7_msg_t *m, cad_arena_t *arena) {
  cad_route_result_t res;
  memset(&res, 0, sizeof res);
  cad__ev_t e = {k->r, arena, (cad_hl7_msg_t *)m, &res, 0, 0, NULL};
  return cad__cond_eval(&e, k->when, &CAD__NO_CTX);
}
