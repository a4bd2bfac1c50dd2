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

typedef struct ctx {
  uint32_t segid;
  int occ; /* 0: no current segment */
  int seg; /* its index in the message, -1 when unknown */
} ctx_t;

typedef struct ev {
  const cad_routes_t *r;
  cad_arena_t *a;
  cad_hl7_msg_t *m;
  cad_route_result_t *res;
  int hl7_code; /* set when a step fails */
  int rc;
} ev_t;

static const ctx_t no_ctx = {0, 0, -1};

static cad_hl7_path_t ctx_path(const cad__rpath_t *rp, const ctx_t *cx) {
  cad_hl7_path_t p = rp->p;
  if (cx->occ && rp->relative && p.segid == cx->segid) p.occ = cx->occ;
  return p;
}

/* ---- failures ----------------------------------------------------------- */

static int step_fail(ev_t *e, int rc, int hl7, const cad_hl7_match_t *mt,
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

static int internal(ev_t *e, int rc) {
  return step_fail(e, rc, 207, NULL, NULL,
                   rc == CAD_E_NOMEM ? "out of memory while routing" : "cannot apply the change");
}

/* ---- values ------------------------------------------------------------- */

static bool str_eq(cad_str_t a, cad_str_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* NUL-terminated copy of v in the arena. */
static char *cstr(ev_t *e, cad_str_t v) {
  char *s = cad_arena_alloc(e->a, v.len + 1);
  if (!s) return NULL;
  if (v.len) memcpy(s, v.p, v.len);
  s[v.len] = 0;
  return s;
}

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

static int op_holds(ev_t *e, const cad__op_t *op, cad_hl7_kind_t kind, cad_str_t v) {
  switch (op->kind) {
    case OP_EXISTS: return (kind == CAD_HL7_VALUE) == op->flag;
    case OP_EMPTY: return (kind != CAD_HL7_VALUE) == op->flag;
    case OP_EQUALS: return str_eq(v, op->s);
    case OP_NOT_EQUALS: return !str_eq(v, op->s);
    case OP_PREFIX: return v.len >= op->s.len && memcmp(v.p, op->s.p, op->s.len) == 0;
    case OP_IN:
      for (size_t i = 0; i < op->nlist; i++)
        if (str_eq(v, op->list[i])) return 1;
      return 0;
    case OP_IN_TABLE: return cad__table_get(op->table, v.p, v.len, NULL);
    case OP_MATCHES: {
      char *s = cstr(e, v);
      if (!s) return internal(e, CAD_E_NOMEM);
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
      cad__dtm_t t;
      if (!cad__dtm_parse(v.p, v.len, &t)) return 0;
      int c = cad__dtm_cmp(&t, &op->dtm);
      return op->kind == OP_BEFORE ? c < 0 : c > 0;
    }
  }
  return 0;
}

static int ops_hold(ev_t *e, const cad__cond_t *k, const cad_hl7_path_t *p,
                    const cad_hl7_match_t *mt) {
  cad_hl7_kind_t kind = cad_hl7_kind(mt);
  cad_str_t v = {"", 0};
  bool have = false;
  for (size_t i = 0; i < k->nops; i++) {
    const cad__op_t *op = &k->ops[i];
    if (!have && op->kind != OP_EXISTS && op->kind != OP_EMPTY) {
      if (!cad_hl7_value(p, mt, e->a, &v)) return internal(e, CAD_E_NOMEM);
      have = true;
    }
    int h = op_holds(e, op, kind, v);
    if (h <= 0) return h;
  }
  return 1;
}

static int cond_eval(ev_t *e, const cad__cond_t *k, const ctx_t *cx) {
  switch (k->kind) {
    case C_NOT: {
      int h = cond_eval(e, k->kids[0], cx);
      return h < 0 ? h : !h;
    }
    case C_ALL:
      for (size_t i = 0; i < k->nkids; i++) {
        int h = cond_eval(e, k->kids[i], cx);
        if (h <= 0) return h;
      }
      return 1;
    case C_ANY:
      for (size_t i = 0; i < k->nkids; i++) {
        int h = cond_eval(e, k->kids[i], cx);
        if (h != 0) return h;
      }
      return 0;
    case C_LEAF: {
      cad_hl7_path_t p = ctx_path(&k->path, cx);
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

/* ---- templates ---------------------------------------------------------- */

/* Translate literal template text written with the standard delimiters into
 * the message's own; a '|' inside a field becomes the field escape. */
static size_t put_literal(const cad_hl7_delims_t *d, cad_str_t t, bool seg_level, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < t.len; i++) {
    char c = t.p[i];
    switch (c) {
      case '|':
        if (seg_level) out[o++] = d->field;
        else if (d->esc) out[o++] = d->esc, out[o++] = 'F', out[o++] = d->esc;
        else out[o++] = c;
        break;
      case '^': out[o++] = d->comp; break;
      case '~': out[o++] = d->rep; break;
      case '&': out[o++] = d->sub ? d->sub : c; break;
      case '\\': out[o++] = d->esc ? d->esc : c; break;
      default: out[o++] = c;
    }
  }
  return o;
}

static int tpl_build(ev_t *e, const cad__tpl_t *t, const ctx_t *cx, bool seg_level,
                     cad_str_t *out) {
  size_t total = 0;
  cad_str_t vals[32];
  cad_str_t *v = t->n <= 32 ? vals : cad_arena_alloc(e->a, t->n * sizeof *v);
  if (!v) return internal(e, CAD_E_NOMEM);
  for (size_t i = 0; i < t->n; i++) {
    const cad__tpart_t *tp = &t->parts[i];
    if (tp->is_path) {
      const cad__rpath_t *rp = &tp->path;
      if (cx->seg >= 0 && rp->relative && rp->p.segid == cx->segid && rp->p.field > 0) {
        /* The segment being written: no search. */
        if (!cad_hl7_resolve_in_seg(&e->m->segs[cx->seg], &rp->p,
                                    rp->p.rep == CAD_HL7_ALL ? 1 : rp->p.rep, &v[i]))
          v[i] = (cad_str_t){"", 0};
      } else {
        cad_hl7_path_t p = ctx_path(rp, cx);
        cad_hl7_match_t mt;
        cad_hl7_get(e->m, &p, &mt);
        v[i] = mt.present ? mt.raw : (cad_str_t){"", 0};
      }
      total += v[i].len;
    } else {
      total += tp->text.len * 3;
    }
  }
  char *buf = cad_arena_alloc(e->a, total + 1);
  if (!buf) return internal(e, CAD_E_NOMEM);
  size_t o = 0;
  for (size_t i = 0; i < t->n; i++) {
    const cad__tpart_t *tp = &t->parts[i];
    if (tp->is_path) {
      if (v[i].len) memcpy(buf + o, v[i].p, v[i].len);
      o += v[i].len;
    } else {
      o += put_literal(&e->m->d, tp->text, seg_level, buf + o);
    }
  }
  out->p = buf;
  out->len = o;
  return 0;
}

/* ---- transforms --------------------------------------------------------- */

/* Give segment s a private field array with room for `need` spans (the
 * parse's array is shared and read-only; see hl7.h). */
static int own_fields(ev_t *e, cad_hl7_seg_t *s, uint32_t need) {
  if (s->fields_cap != 0 && s->fields_cap >= need) return 0;
  uint32_t cap = (need > s->nfields ? need : s->nfields) + 4;
  cad_str_t *nf = cad_arena_alloc(e->a, (size_t)cap * sizeof *nf);
  if (!nf) return CAD_E_NOMEM;
  memcpy(nf, s->fields, (size_t)s->nfields * sizeof *nf);
  s->fields = nf;
  s->fields_cap = cap;
  return 0;
}

/* The bounds [lo, hi) of the n-th piece of f[lo, hi) split on sep; false
 * (and *have = pieces found) when there are fewer. */
static bool piece_in(const char *f, size_t *lo, size_t *hi, char sep, int n, int *have) {
  /* Fields are short: a plain loop beats memchr's call overhead here. */
  size_t a = *lo, end = *hi, i = a;
  int k = 1;
  if (sep) {
    for (; i < end && k < n; i++)
      if (f[i] == sep) {
        k++;
        a = i + 1;
      }
  }
  if (k < n) {
    *have = k;
    return false;
  }
  size_t b = a;
  if (sep)
    while (b < end && f[b] != sep) b++;
  else
    b = end;
  *lo = a;
  *hi = b;
  return true;
}

/* New text of field f after setting its element (rep, comp, sub) to val
 * (already encoded), adding separators where the element does not exist:
 * the same result as cad_hl7_set, in one pass and one allocation. */
static int rewrite(ev_t *e, const cad_hl7_delims_t *d, cad_str_t f, int rep, int comp, int sub,
                   cad_str_t val, cad_str_t *out) {
  if (rep == 0 && comp == 0) {
    *out = val;
    return 0;
  }
  const char seps[3] = {d->rep, d->comp, d->sub};
  int want[3] = {rep > 0 ? rep : 1, comp, sub};
  size_t lo = 0, hi = f.len;
  char pad[3];
  int npad[3] = {0, 0, 0};
  bool missing = false;
  for (int l = 0; l < 3 && want[l] > 0; l++) {
    pad[l] = seps[l];
    if (missing) {
      npad[l] = want[l] - 1;
      continue;
    }
    int have = 0;
    if (!piece_in(f.p, &lo, &hi, seps[l], want[l], &have)) {
      missing = true;
      lo = hi; /* insert at the end of the enclosing element */
      npad[l] = want[l] - have;
    }
  }
  for (int l = 0; l < 3; l++)
    if (npad[l] && !pad[l]) return CAD_E_INVAL; /* the delimiter is not declared */
  size_t total = lo + (size_t)npad[0] + (size_t)npad[1] + (size_t)npad[2] + val.len + (f.len - hi);
  char *b = cad_arena_alloc(e->a, total + 1);
  if (!b) return CAD_E_NOMEM;
  size_t o = lo;
  if (lo) memcpy(b, f.p, lo);
  for (int l = 0; l < 3; l++)
    for (int k = 0; k < npad[l]; k++) b[o++] = pad[l];
  if (val.len) memcpy(b + o, val.p, val.len);
  o += val.len;
  if (f.len > hi) memcpy(b + o, f.p + hi, f.len - hi);
  o += f.len - hi;
  out->p = b;
  out->len = o;
  return 0;
}

/* Set element (p->field, rep, p->comp, p->sub) of segment si to val, which
 * is plain text (escaped here for the segment) or raw ER7. */
static int seg_set(ev_t *e, uint32_t si, const cad_hl7_path_t *p, int rep, cad_str_t val,
                   bool raw) {
  cad_hl7_seg_t *s = &e->m->segs[si];
  if (p->field <= 0 || (s->header && p->field <= 2)) return internal(e, CAD_E_INVAL);
  bool plain = true;
  if (!raw)
    for (size_t i = 0; i < val.len && plain; i++) {
      char c = val.p[i];
      plain = !(c == s->d.field || c == s->d.comp || c == s->d.rep || c == '\r' || c == '\n' ||
                (s->d.esc && c == s->d.esc) || (s->d.sub && c == s->d.sub) ||
                (s->d.trunc && c == s->d.trunc));
    }
  if (!raw && !plain) {
    char *b = cad_arena_alloc(e->a, val.len * 5 + 1);
    if (!b) return internal(e, CAD_E_NOMEM);
    val.len = cad_hl7_escape(&s->d, val.p, val.len, b);
    val.p = b;
  }
  uint32_t idx = s->header ? (uint32_t)p->field - 1 : (uint32_t)p->field;
  int rc = own_fields(e, s, idx + 1);
  if (rc) return internal(e, rc);
  while (s->nfields <= idx) s->fields[s->nfields++] = (cad_str_t){"", 0};
  cad_str_t nf;
  if ((rc = rewrite(e, &s->d, s->fields[idx], rep, p->comp, p->sub, val, &nf)))
    return internal(e, rc);
  s->fields[idx] = nf;
  s->dirty = true;
  e->m->dirty = true;
  return 0;
}

/* seg_set over every repetition when p->rep is [*]. */
static int seg_set_all(ev_t *e, uint32_t si, const cad_hl7_path_t *p, cad_str_t val, bool raw) {
  if (p->rep != CAD_HL7_ALL) return seg_set(e, si, p, p->rep, val, raw);
  cad_str_t f;
  int nrep = cad_hl7_field(&e->m->segs[si], p->field, &f) ? cad_hl7_npieces(f, e->m->segs[si].d.rep)
                                                          : 1;
  for (int r = 1; r <= nrep; r++) {
    int rc = seg_set(e, si, p, r, val, raw);
    if (rc) return rc;
  }
  return 0;
}

/* set (template), copy and move: per occurrence of the target segment, so
 * `${OBX-3.1}` in a step on OBX[*] reads the OBX being written. */
static int step_template(ev_t *e, const cad__step_t *st) {
  const cad_hl7_path_t *p = &st->path.p;
  bool same_seg_from = st->kind == S_MOVE && st->from.relative && st->from.p.segid == p->segid &&
                       st->from.p.occ != CAD_HL7_ALL;
  int occ = 0;
  bool any = false;
  for (uint32_t i = 0; i < e->m->nsegs; i++) {
    if (e->m->segs[i].id != p->segid) continue;
    occ++;
    if (p->occ != CAD_HL7_ALL && occ != p->occ) continue;
    any = true;
    ctx_t cx = {p->segid, occ, (int)i};
    cad_str_t v;
    int rc = tpl_build(e, &st->tpl, &cx, false, &v);
    if (rc) return rc;
    if ((rc = seg_set_all(e, i, p, v, true))) return rc;
    if (same_seg_from) {
      cad_hl7_path_t f = ctx_path(&st->from, &cx);
      int c = cad_hl7_clear(e->m, &f);
      if (c < 0) return internal(e, c);
    }
    if (p->occ != CAD_HL7_ALL) break;
  }
  if (!any) {
    /* The segment does not occur: cad_hl7_set appends it (occurrence 1). */
    cad_str_t v;
    int rc = tpl_build(e, &st->tpl, &no_ctx, false, &v);
    if (rc) return rc;
    rc = cad_hl7_set(e->m, p, v.p, v.len, CAD_HL7_SET_RAW);
    if (rc < 0 && rc != CAD_E_NOTFOUND) return internal(e, rc);
  }
  if (st->kind == S_MOVE && !(same_seg_from && any)) {
    int c = cad_hl7_clear(e->m, &st->from.p);
    if (c < 0) return internal(e, c);
  }
  return 0;
}

/* set with a literal value: escaped once per segment's delimiters. */
static int step_set_value(ev_t *e, const cad__step_t *st) {
  const cad_hl7_path_t *p = &st->path.p;
  int occ = 0;
  bool any = false;
  for (uint32_t i = 0; i < e->m->nsegs; i++) {
    if (e->m->segs[i].id != p->segid) continue;
    occ++;
    if (p->occ != CAD_HL7_ALL && occ != p->occ) continue;
    any = true;
    int rc = seg_set_all(e, i, p, st->value, false);
    if (rc) return rc;
    if (p->occ != CAD_HL7_ALL) break;
  }
  if (!any) {
    /* Absent: cad_hl7_set appends it when it may be the next occurrence. */
    int rc = cad_hl7_set(e->m, p, st->value.p, st->value.len, 0);
    if (rc < 0 && rc != CAD_E_NOTFOUND) return internal(e, rc);
  }
  return 0;
}

/* Apply a regular-expression replacement to v (every match). */
static int regex_replace(ev_t *e, const cad__step_t *st, cad_str_t v, cad_str_t *out) {
  char *s = cstr(e, v);
  if (!s) return internal(e, CAD_E_NOMEM);
  size_t cap = v.len + st->value.len * 4 + 64, o = 0;
  char *buf = cad_arena_alloc(e->a, cap);
  if (!buf) return internal(e, CAD_E_NOMEM);
  const char *p = s, *end = s + strlen(s);
  regmatch_t g[10];
  int eflags = 0;
  while (p <= end) {
    if (regexec(st->re, p, 10, g, eflags) != 0) break;
    size_t need = (size_t)g[0].rm_so + st->value.len * 2 + 64;
    for (size_t k = 0; k + 1 < st->value.len; k++)
      if (st->value.p[k] == '\\' && st->value.p[k + 1] >= '1' && st->value.p[k + 1] <= '9') {
        int gi = st->value.p[k + 1] - '0';
        if (g[gi].rm_so >= 0) need += (size_t)(g[gi].rm_eo - g[gi].rm_so);
      }
    if (o + need > cap) {
      size_t nc = (o + need) * 2;
      if (nc > CAD__ROUTES_MAX_VALUE * 2)
        return step_fail(e, CAD_E_TOOBIG, 207, NULL, NULL, "replacement result too long");
      char *nb = cad_arena_alloc(e->a, nc);
      if (!nb) return internal(e, CAD_E_NOMEM);
      memcpy(nb, buf, o);
      buf = nb;
      cap = nc;
    }
    memcpy(buf + o, p, (size_t)g[0].rm_so);
    o += (size_t)g[0].rm_so;
    for (size_t k = 0; k < st->value.len; k++) {
      char c = st->value.p[k];
      if (c == '\\' && k + 1 < st->value.len) {
        char d = st->value.p[k + 1];
        if (d >= '0' && d <= '9') {
          int gi = d - '0';
          if (g[gi].rm_so >= 0) {
            memcpy(buf + o, p + g[gi].rm_so, (size_t)(g[gi].rm_eo - g[gi].rm_so));
            o += (size_t)(g[gi].rm_eo - g[gi].rm_so);
          }
          k++;
          continue;
        }
        if (d == '\\') {
          buf[o++] = '\\';
          k++;
          continue;
        }
      }
      buf[o++] = c;
    }
    if (g[0].rm_eo == g[0].rm_so) {
      /* An empty match: copy one character and move on. */
      if (p + g[0].rm_eo >= end) {
        p = end + 1;
        break;
      }
      buf[o++] = p[g[0].rm_eo];
      p += g[0].rm_eo + 1;
    } else {
      p += g[0].rm_eo;
    }
    eflags = REG_NOTBOL;
  }
  if (p < end) {
    size_t rest = (size_t)(end - p);
    if (o + rest > cap) {
      char *nb = cad_arena_alloc(e->a, o + rest + 1);
      if (!nb) return internal(e, CAD_E_NOMEM);
      memcpy(nb, buf, o);
      buf = nb;
    }
    memcpy(buf + o, p, rest);
    o += rest;
  }
  out->p = buf;
  out->len = o;
  return 0;
}

static size_t put_num(char *b, int v, int width) {
  for (int k = width - 1; k >= 0; k--) {
    b[k] = (char)('0' + v % 10);
    v /= 10;
  }
  return (size_t)width;
}

static size_t put_tz(char *b, const cad__dtm_t *t) {
  if (!t->has_tz) return 0;
  int z = t->tz_min < 0 ? -t->tz_min : t->tz_min;
  b[0] = t->tz_min < 0 ? '-' : '+';
  put_num(b + 1, z / 60, 2);
  put_num(b + 3, z % 60, 2);
  return 5;
}

static int date_format(ev_t *e, const cad__step_t *st, const cad__dtm_t *t, cad_str_t *out) {
  size_t cap = st->date_mode == DATE_FORMAT ? strlen(st->fmt) * 6 + 32 : 40;
  char *buf = cad_arena_alloc(e->a, cap);
  if (!buf) return internal(e, CAD_E_NOMEM);
  size_t o = 0;
  static const int w[6] = {4, 2, 2, 2, 2, 2};
  if (st->date_mode == DATE_PRECISION) {
    for (int k = 0; k < st->precision; k++) o += put_num(buf + o, t->v[k], w[k]);
    if (st->precision >= 4) o += put_tz(buf + o, t);
  } else {
    for (const char *f = st->fmt; *f; f++) {
      if (*f != '%') {
        buf[o++] = *f;
        continue;
      }
      f++;
      const char *conv = "YmdHMS";
      const char *at = *f ? strchr(conv, *f) : NULL;
      if (at) {
        int k = (int)(at - conv);
        o += put_num(buf + o, t->v[k], w[k]);
      } else if (*f == 'z') {
        o += put_tz(buf + o, t);
      } else {
        buf[o++] = '%';
        if (!*f) break;
      }
    }
  }
  out->p = buf;
  out->len = o;
  return 0;
}

/* map, replace, upper, lower, trim, format_date: one new value per match. */
static int step_per_match(ev_t *e, const cad__step_t *st) {
  cad_hl7_path_t p = st->path.p;
  cad_hl7_iter_t it;
  cad_hl7_match_t mt;
  cad_hl7_iter_init(&it, e->m, &p);
  while (cad_hl7_iter_next(&it, &mt)) {
    if (cad_hl7_kind(&mt) != CAD_HL7_VALUE) continue; /* nothing to change */
    bool leaf = cad_hl7_is_leaf(&p, &mt);
    cad_str_t v, nv;
    if (!cad_hl7_value(&p, &mt, e->a, &v)) return internal(e, CAD_E_NOMEM);
    bool set = true, raw = !leaf;
    int rc;
    switch (st->kind) {
      case S_MAP:
        if (cad__table_get(st->table, v.p, v.len, &nv)) {
          raw = false;
          break;
        }
        if (st->dflt == DFLT_KEEP) set = false;
        else if (st->dflt == DFLT_EMPTY) nv = (cad_str_t){"", 0};
        else if (st->dflt == DFLT_VALUE) nv = st->value, raw = false;
        else {
          char where[96];
          cad_hl7_path_t q = p;
          q.occ = mt.occ;
          if (q.rep == CAD_HL7_ALL) q.rep = mt.rep;
          cad_hl7_path_format(&q, where, sizeof where);
          char tmp[200];
          snprintf(tmp, sizeof tmp, "%s: code not in table '%s'", where, st->table->name);
          return step_fail(e, CAD_E_NOTFOUND, 103, &mt, &p, tmp);
        }
        break;
      case S_REPLACE:
        if ((rc = regex_replace(e, st, v, &nv))) return rc;
        break;
      case S_UPPER:
      case S_LOWER: {
        char *b = cad_arena_alloc(e->a, v.len + 1);
        if (!b) return internal(e, CAD_E_NOMEM);
        for (size_t i = 0; i < v.len; i++) {
          char c = v.p[i];
          if (st->kind == S_UPPER && c >= 'a' && c <= 'z') c = (char)(c - 32);
          if (st->kind == S_LOWER && c >= 'A' && c <= 'Z') c = (char)(c + 32);
          b[i] = c;
        }
        nv = (cad_str_t){b, v.len};
        break;
      }
      case S_TRIM: {
        size_t i = 0, j = v.len;
        while (i < j && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
        while (j > i && (v.p[j - 1] == ' ' || v.p[j - 1] == '\t')) j--;
        if (i == 0 && j == v.len) set = false;
        nv = (cad_str_t){v.p + i, j - i};
        break;
      }
      case S_DATE: {
        cad__dtm_t t;
        if (!leaf || !cad__dtm_parse(v.p, v.len, &t)) {
          char where[96], tmp[200];
          cad_hl7_path_t q = p;
          q.occ = mt.occ;
          if (q.rep == CAD_HL7_ALL) q.rep = mt.rep;
          cad_hl7_path_format(&q, where, sizeof where);
          snprintf(tmp, sizeof tmp, "%s: not an HL7 date/time", where);
          return step_fail(e, CAD_E_INVAL, 102, &mt, &p, tmp);
        }
        if ((rc = date_format(e, st, &t, &nv))) return rc;
        raw = false;
        break;
      }
      default:
        return 0;
    }
    if (!set) continue;
    if ((rc = seg_set(e, mt.seg_index, &p, p.rep == CAD_HL7_ALL ? mt.rep : p.rep, nv, raw)))
      return rc;
  }
  return 0;
}

static int step_delete(ev_t *e, const cad__step_t *st) {
  cad_hl7_msg_t *m = e->m;
  uint32_t *del = NULL;
  uint32_t nd = 0;
  int occ = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    if (m->segs[i].id != st->segid) continue;
    occ++;
    if (st->when) {
      ctx_t cx = {st->segid, occ, (int)i};
      int h = cond_eval(e, st->when, &cx);
      if (h < 0) return h;
      if (!h) continue;
    }
    if (!del) {
      del = cad_arena_alloc(e->a, (size_t)m->nsegs * sizeof *del);
      if (!del) return internal(e, CAD_E_NOMEM);
    }
    del[nd++] = i;
  }
  while (nd > 0) {
    int rc = cad_hl7_seg_delete(m, del[--nd]);
    if (rc < 0) return internal(e, rc);
  }
  return 0;
}

static int step_add(ev_t *e, const cad__step_t *st) {
  cad_str_t v;
  int rc = tpl_build(e, &st->tpl, &no_ctx, true, &v);
  if (rc) return rc;
  uint32_t pos = e->m->nsegs;
  if (st->has_after) {
    uint32_t id = cad_hl7_segid(st->to);
    for (uint32_t i = e->m->nsegs; i-- > 0;)
      if (e->m->segs[i].id == id) {
        pos = i + 1;
        break;
      }
  }
  /* A substituted value may hold a line break of its own: refuse it. */
  if (memchr(v.p, '\r', v.len) || memchr(v.p, '\n', v.len))
    return step_fail(e, CAD_E_INVAL, 207, NULL, NULL, "the new segment has a line break");
  rc = cad_hl7_seg_insert(e->m, pos, v.p, v.len);
  return rc < 0 ? internal(e, rc) : 0;
}

static int step_rename(ev_t *e, const cad__step_t *st) {
  for (uint32_t i = 0; i < e->m->nsegs; i++) {
    if (e->m->segs[i].id != st->segid) continue;
    int rc = cad_hl7_seg_rename(e->m, i, st->to);
    if (rc < 0) return internal(e, rc);
  }
  return 0;
}

static int apply_step(ev_t *e, const cad__step_t *st) {
  switch (st->kind) {
    case S_SET_VALUE: return step_set_value(e, st);
    case S_SET_TEMPLATE:
    case S_MOVE: return step_template(e, st);
    case S_CLEAR: {
      int rc = cad_hl7_clear(e->m, &st->path.p);
      return rc < 0 ? internal(e, rc) : 0;
    }
    case S_MAP:
    case S_REPLACE:
    case S_UPPER:
    case S_LOWER:
    case S_TRIM:
    case S_DATE: return step_per_match(e, st);
    case S_DELETE: return step_delete(e, st);
    case S_ADD: return step_add(e, st);
    case S_RENAME: return step_rename(e, st);
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
    const cad_hl7_seg_t *s = &m->segs[i];
    if (!s->dirty) {
      total += s->raw.len + 1;
      continue;
    }
    for (uint32_t k = 0; k < s->nfields; k++) total += s->fields[k].len + 1;
  }
  char *buf = cad_arena_alloc(a, total + 1);
  if (!buf) return CAD_E_NOMEM;
  size_t o = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    const cad_hl7_seg_t *s = &m->segs[i];
    if (!s->dirty) {
      memcpy(buf + o, s->raw.p, s->raw.len);
      o += s->raw.len;
    } else {
      for (uint32_t k = 0; k < s->nfields; k++) {
        if (k) buf[o++] = s->d.field;
        if (s->fields[k].len) memcpy(buf + o, s->fields[k].p, s->fields[k].len);
        o += s->fields[k].len;
      }
    }
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
  ev_t e = {r, arena, (cad_hl7_msg_t *)parsed, res, 0, 0};
  res->outs = cad_arena_alloc(arena, r->max_outs * sizeof *res->outs);
  if (!res->outs) goto nomem;
  bool matched = false;
  cad_str_t original = {NULL, 0};
  for (size_t i = 0; i < r->nroutes; i++) {
    const cad__route_t *rt = &r->routes[i];
    e.m = (cad_hl7_msg_t *)parsed; /* filters only read */
    if (rt->when) {
      int h = cond_eval(&e, rt->when, &no_ctx);
      if (h < 0) goto internal_err;
      if (!h) continue;
    }
    matched = true;
    cad_str_t out;
    if (rt->nsteps) {
      cad_hl7_msg_t copy;
      if (clone_msg(parsed, arena, &copy)) goto nomem;
      e.m = &copy;
      for (size_t s = 0; s < rt->nsteps; s++) {
        if (apply_step(&e, &rt->steps[s]) < 0) {
          set_error(r, res, (int)i, (int)s + 1);
          return e.hl7_code == 207 && e.rc == CAD_E_NOMEM ? CAD_E_NOMEM : 0;
        }
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
    default:
      res->disposition = CAD_ROUTE_FILTERED;
      return 0;
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

/* ---- standalone conditions (routes.h: cad_route_cond_*) ---------------- */

int cad_route_cond_eval(const cad_route_cond_t *k, const cad_hl7_msg_t *m, cad_arena_t *arena) {
  cad_route_result_t res;
  memset(&res, 0, sizeof res);
  ev_t e = {k->r, arena, (cad_hl7_msg_t *)m, &res, 0, 0};
  return cond_eval(&e, k->when, &no_ctx);
}
