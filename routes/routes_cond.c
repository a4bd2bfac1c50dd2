/* routes_cond.c - conditions (filters, `when`) and how a failing step is
 * reported: what both the evaluation (routes_eval.c) and the transforms
 * (routes_steps.c) need, so that those two do not depend on each other.
 * Everything allocated here comes from the caller's arena. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* Same bytes (values are short: a loop, not memcmp). */
static inline bool same(cad_str_t a, cad_str_t b) {
  if (a.len != b.len) return false;
  for (size_t i = 0; i < a.len; i++)
    if (a.p[i] != b.p[i]) return false;
  return true;
}

/* cad_hl7_piece() for the short texts of one field: a loop, not memchr. */
static inline bool piece(cad_str_t in, char sep, int n, cad_str_t *out) {
  if (sep == 0) {
    *out = n == 1 ? in : (cad_str_t){in.p, 0};
    return n == 1;
  }
  const char *p = in.p, *end = in.p ? in.p + in.len : NULL;
  for (int k = 1; k < n; k++) {
    while (p < end && *p != sep) p++;
    if (p == end) return false;
    p++;
  }
  const char *q = p;
  while (q < end && *q != sep) q++;
  *out = (cad_str_t){p, (size_t)(q - p)};
  return true;
}

/* The component and subcomponent of p in repetition r (as
 * cad_hl7_resolve_in_field() reads them). */
static inline bool below_rep(cad_str_t r, const cad_hl7_delims_t *d, const cad_hl7_path_t *p,
                             cad_str_t *v) {
  cad_str_t c;
  if (p->comp == 0) {
    *v = r;
    return true;
  }
  if (!piece(r, d->comp, p->comp, &c)) return false;
  if (p->sub == 0) {
    *v = c;
    return true;
  }
  return piece(c, d->sub, p->sub, v);
}

/* In the repetition that starts at p (it ends at the first rs before end,
 * or at end): component c (>= 1) to *out; false when it has fewer (what
 * piece() of below_rep() gives on the repetition).  With rep_end, *rep_end
 * is set to where the repetition ends; without, the scan stops at the
 * component.  A separator that is not declared (0) separates nothing.
 * Bytes are looked at 16 at a time where they may be read (before limit,
 * which may be NULL) and both separators are declared, else one by one: the
 * same result either way. */
static inline bool rep_comp(const char *p, const char *end, const char *limit, char cs, char rs,
                            int c, cad_str_t *out, const char **rep_end) {
  const char *a = p;
  int k = 1;
  bool found = false;
#if defined(__SSE2__)
  if (limit && cs && rs) {
    const __m128i vc = _mm_set1_epi8(cs), vr = _mm_set1_epi8(rs);
    while (p < end && limit - p >= 16) {
      __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
      unsigned mc = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vc));
      unsigned mr = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vr));
      size_t left = (size_t)(end - p);
      if (left < 16) {
        mc &= (1u << left) - 1;
        mr &= (1u << left) - 1;
      }
      unsigned rb = mr & (0u - mr); /* the first repetition separator, if any */
      if (rb) mc &= rb - 1;         /* the component separators before it */
      for (; !found && mc; mc &= mc - 1) {
        const char *h = p + __builtin_ctz(mc);
        if (k == c) {
          *out = (cad_str_t){a, (size_t)(h - a)};
          found = true;
        } else {
          k++;
          a = h + 1;
        }
      }
      if (rb) {
        const char *h = p + __builtin_ctz(rb);
        if (!found && k == c) *out = (cad_str_t){a, (size_t)(h - a)}, found = true;
        if (rep_end) *rep_end = h;
        return found;
      }
      if (found && !rep_end) return true;
      p += left < 16 ? left : 16;
    }
  }
#else
  (void)limit;
#endif
  for (; p < end; p++) {
    char ch = *p;
    if (ch == rs && rs) break;
    if (ch != cs || !cs || found) continue;
    if (k == c) {
      *out = (cad_str_t){a, (size_t)(p - a)};
      found = true;
      if (!rep_end) return true;
    } else {
      k++;
      a = p + 1;
    }
  }
  if (!found && k == c) *out = (cad_str_t){a, (size_t)(p - a)}, found = true;
  if (rep_end) *rep_end = p;
  return found;
}

/* cad_hl7_get() for a path without wildcards, with the field taken apart
 * here (inline) rather than through memchr: the same match. */
static void get_one(const cad_hl7_msg_t *m, const cad_hl7_path_t *p, cad_hl7_match_t *out) {
  int i = -1, seen = 0;
  for (uint32_t k = 0; k < m->nsegs; k++)
    if (m->segs[k].id == p->segid && ++seen == p->occ) {
      i = (int)k;
      break;
    }
  if (i < 0) {
    memset(out, 0, sizeof *out);
    return;
  }
  const cad_hl7_seg_t *s = &m->segs[i];
  /* v is kept out of memory on the usual paths (no address passed to a
   * function that is not inlined): a cad_str_t stored as two 8-byte halves
   * and loaded whole just after stalls the CPU (no store forwarding). */
  cad_str_t v = {NULL, 0}, f;
  bool present;
  if (p->field == 0 || (s->header && p->field <= 2)) {
    cad_str_t w;
    present = cad_hl7_resolve_in_seg(s, p, p->rep, &w);
    v.p = w.p;
    v.len = w.len;
  } else if (!cad_hl7_field(s, p->field, &f)) {
    present = false;
  } else if (p->rep == 0 && p->comp == 0) {
    present = true;
    v = f;
  } else if (p->rep <= 1 && p->comp > 0) {
    cad_str_t c;
    present = rep_comp(f.p, f.p ? f.p + f.len : NULL, cad__input_limit(m, f.p), s->d.comp, s->d.rep,
                       p->comp, &c, NULL);
    if (present && p->sub == 0) v = c;
    else if (present) present = piece(c, s->d.sub, p->sub, &v);
  } else {
    cad_str_t r;
    present = piece(f, s->d.rep, p->rep <= 0 ? 1 : p->rep, &r) && below_rep(r, &s->d, p, &v);
  }
  if (!present) v = (cad_str_t){NULL, 0};
  out->raw.p = v.p;
  out->raw.len = v.len;
  out->present = present;
  out->seg_index = (uint32_t)i;
  out->occ = p->occ;
  out->rep = p->rep;
  out->d = &s->d;
}

static int op_holds(cad__ev_t *e, const cad__op_t *op, cad_hl7_kind_t kind, cad_str_t v) {
  switch (op->kind) {
    case OP_EXISTS: return (kind == CAD_HL7_VALUE) == op->flag;
    case OP_EMPTY: return (kind != CAD_HL7_VALUE) == op->flag;
    case OP_EQUALS: return same(v, op->s);
    case OP_NOT_EQUALS: return !same(v, op->s);
    case OP_PREFIX: return v.len >= op->s.len && memcmp(v.p, op->s.p, op->s.len) == 0;
    case OP_IN:
      for (size_t i = 0; i < op->nlist; i++)
        if (same(v, op->list[i])) return 1;
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
  cad_hl7_kind_t kind = cad__kind(mt);
  cad_str_t v = {"", 0};
  bool have = false;
  for (size_t i = 0; i < k->nops; i++) {
    const cad__op_t *op = &k->ops[i];
    if (!have && op->kind != OP_EXISTS && op->kind != OP_EMPTY) {
      if (!cad__plain_value(mt, &v) && !cad_hl7_value(p, mt, e->a, &v))
        return cad__internal(e, CAD_E_NOMEM);
      have = true;
    }
    int h = op_holds(e, op, kind, v);
    if (h <= 0) return h;
  }
  return 1;
}

/* A leaf on every repetition of one occurrence's field (PID-3[*].4): the
 * matches cad_hl7_iter_next() gives, one per repetition, without it. */
static int leaf_reps(cad__ev_t *e, const cad__cond_t *k, const cad_hl7_path_t *p) {
  const cad_hl7_msg_t *m = e->m;
  cad_hl7_match_t mt;
  int i = -1, seen = 0;
  for (uint32_t j = 0; j < m->nsegs; j++)
    if (m->segs[j].id == p->segid && ++seen == p->occ) {
      i = (int)j;
      break;
    }
  if (i < 0) {
    /* The segment does not occur: the operators judge an absent value. */
    memset(&mt, 0, sizeof mt);
    mt.d = &m->d;
    return ops_hold(e, k, p, &mt);
  }
  const cad_hl7_seg_t *s = &m->segs[i];
  cad_str_t f;
  bool have = cad_hl7_field(s, p->field, &f);
  bool whole = s->header && p->field <= 2;               /* MSH-1, MSH-2: never split */
  const char *at = f.p, *end = f.p ? f.p + f.len : NULL; /* no offset on NULL */
  const char *limit = have ? cad__input_limit(m, f.p) : NULL;
  /* A component of each repetition, found while the repetition's end is. */
  const bool scan = have && !whole && s->d.rep && s->d.comp && p->comp > 0;
  for (int r = 1;; r++) {
    cad_str_t rv = f, v = {NULL, 0};
    bool last = true, present;
    if (scan) {
      const char *q;
      cad_str_t c = {NULL, 0};
      bool in = rep_comp(at, end, limit, s->d.comp, s->d.rep, p->comp, &c, &q);
      last = q == end;
      at = q + 1;
      present = in && (p->sub == 0 ? (v = c, true) : piece(c, s->d.sub, p->sub, &v));
    } else {
      if (have && !whole && s->d.rep) {
        const char *q = at;
        while (q < end && *q != s->d.rep) q++;
        rv = (cad_str_t){at, (size_t)(q - at)};
        last = q == end;
        at = q + 1;
      }
      present = have && (whole ? cad_hl7_resolve_in_seg(s, p, r, &v) : below_rep(rv, &s->d, p, &v));
    }
    if (!present) v = (cad_str_t){NULL, 0};
    mt = (cad_hl7_match_t){v, present, (uint32_t)i, p->occ, r, &s->d};
    int h = ops_hold(e, k, p, &mt);
    if (h < 0) return h;
    if (k->quant_all && !h) return 0;
    if (!k->quant_all && h) return 1;
    if (last) break;
  }
  return k->quant_all ? 1 : 0;
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
      /* The path as written, unless the current segment gives its
       * occurrence (not copied otherwise: a copy read back at once stalls). */
      const cad__rpath_t *rp = &k->path;
      cad_hl7_path_t p;
      const cad_hl7_path_t *pp = &rp->p;
      if (cx->occ && rp->relative && rp->p.segid == cx->segid) {
        p = rp->p;
        p.occ = cx->occ;
        pp = &p;
      }
      if (pp->occ != CAD_HL7_ALL && pp->rep != CAD_HL7_ALL) {
        /* One match at most (or none: an absent value), as the loop below. */
        cad_hl7_match_t mt;
        get_one(e->m, pp, &mt);
        return ops_hold(e, k, pp, &mt);
      }
      if (pp->occ != CAD_HL7_ALL && pp->field > 0) return leaf_reps(e, k, pp);
      p = *pp;
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
