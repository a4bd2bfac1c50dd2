/* routes_cond.c - conditions (filters, `when`) and how a failing step is
 * reported: what both the evaluation (routes_eval.c) and the transforms
 * (routes_steps.c) need, so that those two do not depend on each other.
 * Everything allocated here comes from the caller's arena. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
