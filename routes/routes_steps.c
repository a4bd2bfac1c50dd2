/* routes_steps.c - transforms: applying a route's steps to its copy of a message.
 *
 * Every step is defined by how it applies on its own, one after the other
 * (step_* below, "stepwise").  Runs of steps that edit one segment's fields
 * are applied faster, one segment occurrence at a time ("fused", at the end
 * of this file), with the same result; the stepwise path stays the reference
 * and reports every error.  Everything allocated here comes from the caller's
 * arena; values are never changed in place (an edit writes a new buffer), so
 * spans may be shared between fields.  The message is changed only through
 * parsers/hl7's editing API (cad_hl7_seg_set, cad_hl7_set, ...).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "routes_int.h"

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

#define CAD__INLINE __attribute__((always_inline))
static inline CAD__INLINE int ws_read(cad__ev_t *e, int slot, const cad_hl7_path_t *p, int rep,
                                      cad_hl7_match_t *mt);

static int tpl_build(cad__ev_t *e, const cad__tpl_t *t, const cad__ctx_t *cx, bool seg_level,
                     cad_str_t *out) {
  size_t total = 0;
  cad_str_t vals[32];
  cad_str_t *v = t->n <= 32 ? vals : cad_arena_alloc(e->a, t->n * sizeof *v);
  if (!v) return cad__internal(e, CAD_E_NOMEM);
  for (size_t i = 0; i < t->n; i++) {
    const cad__tpart_t *tp = &t->parts[i];
    if (tp->is_path) {
      const cad__rpath_t *rp = &tp->path;
      if (cx->seg >= 0 && rp->relative && rp->p.segid == cx->segid && rp->p.field > 0) {
        /* The segment being written: no search. */
        int rep = rp->p.rep == CAD_HL7_ALL ? 1 : rp->p.rep;
        if (e->ws) {
          /* ... and its fields as the fused run has left them so far. */
          cad_hl7_match_t mt;
          int rc = ws_read(e, tp->slot, &rp->p, rep, &mt);
          if (rc) return rc;
          v[i] = mt.present ? mt.raw : (cad_str_t){"", 0};
        } else if (!cad_hl7_resolve_in_seg(&e->m->segs[cx->seg], &rp->p, rep, &v[i])) {
          v[i] = (cad_str_t){"", 0};
        }
      } else {
        cad_hl7_path_t p = cad__ctx_path(rp, cx);
        cad_hl7_match_t mt;
        cad_hl7_get(e->m, &p, &mt);
        v[i] = mt.present ? mt.raw : (cad_str_t){"", 0};
      }
      total += v[i].len;
    } else {
      total += tp->text.len * 3;
    }
  }
  if (t->n == 1 && t->parts[0].is_path) {
    /* A copy: the source's text as it is (values are never changed in
     * place, so sharing it is safe). */
    *out = v[0];
    return 0;
  }
  char *buf = cad_arena_alloc(e->a, total + 1);
  if (!buf) return cad__internal(e, CAD_E_NOMEM);
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

/* Plain text as ER7 for a segment with delimiters d (cad_hl7_encode). */
static inline int encode(cad__ev_t *e, const cad_hl7_delims_t *d, cad_str_t *val) {
  int rc = cad_hl7_encode(d, *val, e->a, val);
  return rc ? cad__internal(e, rc) : 0;
}

/* Set element (p->field, rep, p->comp, p->sub) of segment si to val, which
 * is plain text (escaped here for the segment) or raw ER7. */
static int seg_set(cad__ev_t *e, uint32_t si, const cad_hl7_path_t *p, int rep, cad_str_t val,
                   bool raw) {
  int rc = cad_hl7_seg_set(e->m, si, p, rep, val.p, val.len, raw ? CAD_HL7_SET_RAW : 0);
  return rc < 0 ? cad__internal(e, rc) : 0;
}

/* seg_set over every repetition when p->rep is [*]. */
static int seg_set_all(cad__ev_t *e, uint32_t si, const cad_hl7_path_t *p, cad_str_t val,
                       bool raw) {
  if (p->rep != CAD_HL7_ALL) return seg_set(e, si, p, p->rep, val, raw);
  cad_str_t f;
  int nrep =
      cad_hl7_field(&e->m->segs[si], p->field, &f) ? cad_hl7_npieces(f, e->m->segs[si].d.rep) : 1;
  for (int r = 1; r <= nrep; r++) {
    int rc = seg_set(e, si, p, r, val, raw);
    if (rc) return rc;
  }
  return 0;
}

/* The occurrences of a path's segment that it addresses ([*]: every one;
 * [n] or none written: the n-th), in order.  The loop body may edit the
 * segments but not add or remove any. */
typedef struct occ_it {
  uint32_t next;
  int occ;
  bool done;
} occ_it_t;

static int occ_next(const cad_hl7_msg_t *m, const cad_hl7_path_t *p, occ_it_t *it) {
  for (uint32_t i = it->next; !it->done && i < m->nsegs; i++) {
    if (m->segs[i].id != p->segid) continue;
    it->occ++;
    if (p->occ != CAD_HL7_ALL && it->occ != p->occ) continue;
    it->next = i + 1;
    it->done = p->occ != CAD_HL7_ALL;
    return (int)i;
  }
  it->done = true;
  return -1;
}

/* set (template), copy and move: per occurrence of the target segment, so
 * `${OBX-3.1}` in a step on OBX[*] reads the OBX being written. */
static int step_template(cad__ev_t *e, const cad__step_t *st) {
  const cad_hl7_path_t *p = &st->path.p;
  bool same_seg_from = st->kind == S_MOVE && st->from.relative && st->from.p.segid == p->segid &&
                       st->from.p.occ != CAD_HL7_ALL;
  occ_it_t it = {0, 0, false};
  bool any = false;
  for (int i; (i = occ_next(e->m, p, &it)) >= 0;) {
    any = true;
    cad__ctx_t cx = {p->segid, it.occ, i};
    cad_str_t v;
    int rc = tpl_build(e, &st->tpl, &cx, false, &v);
    if (rc) return rc;
    if ((rc = seg_set_all(e, (uint32_t)i, p, v, true))) return rc;
    if (same_seg_from) {
      cad_hl7_path_t f = cad__ctx_path(&st->from, &cx);
      int c = cad_hl7_clear(e->m, &f);
      if (c < 0) return cad__internal(e, c);
    }
  }
  if (!any) {
    /* The segment does not occur: cad_hl7_set appends it (occurrence 1). */
    cad_str_t v;
    int rc = tpl_build(e, &st->tpl, &CAD__NO_CTX, false, &v);
    if (rc) return rc;
    rc = cad_hl7_set(e->m, p, v.p, v.len, CAD_HL7_SET_RAW);
    if (rc < 0 && rc != CAD_E_NOTFOUND) return cad__internal(e, rc);
  }
  if (st->kind == S_MOVE && !(same_seg_from && any)) {
    int c = cad_hl7_clear(e->m, &st->from.p);
    if (c < 0) return cad__internal(e, c);
  }
  return 0;
}

/* set with a literal value: escaped once per segment's delimiters. */
static int step_set_value(cad__ev_t *e, const cad__step_t *st) {
  const cad_hl7_path_t *p = &st->path.p;
  occ_it_t it = {0, 0, false};
  bool any = false;
  for (int i; (i = occ_next(e->m, p, &it)) >= 0;) {
    any = true;
    int rc = seg_set_all(e, (uint32_t)i, p, st->value, false);
    if (rc) return rc;
  }
  if (!any) {
    /* Absent: cad_hl7_set appends it when it may be the next occurrence. */
    int rc = cad_hl7_set(e->m, p, st->value.p, st->value.len, 0);
    if (rc < 0 && rc != CAD_E_NOTFOUND) return cad__internal(e, rc);
  }
  return 0;
}

/* Apply a regular-expression replacement to v (every match). */
static int regex_replace(cad__ev_t *e, const cad__step_t *st, cad_str_t v, cad_str_t *out) {
  char *s = cad_arena_dup(e->a, v.p, v.len);
  if (!s) return cad__internal(e, CAD_E_NOMEM);
  size_t cap = v.len + st->value.len * 4 + 64, o = 0;
  char *buf = cad_arena_alloc(e->a, cap);
  if (!buf) return cad__internal(e, CAD_E_NOMEM);
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
        return cad__step_fail(e, CAD_E_TOOBIG, 207, NULL, NULL, "replacement result too long");
      char *nb = cad_arena_alloc(e->a, nc);
      if (!nb) return cad__internal(e, CAD_E_NOMEM);
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
      if (!nb) return cad__internal(e, CAD_E_NOMEM);
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
  if (width == 2 && v >= 0 && v < 100) {
    b[0] = (char)('0' + v / 10);
    b[1] = (char)('0' + v % 10);
    return 2;
  }
  for (int k = width - 1; k >= 0; k--) {
    b[k] = (char)('0' + v % 10);
    v /= 10;
  }
  return (size_t)width;
}

static size_t put_tz(char *b, const cad_hl7_dtm_t *t) {
  if (!t->has_tz) return 0;
  int z = t->tz_min < 0 ? -t->tz_min : t->tz_min;
  b[0] = t->tz_min < 0 ? '-' : '+';
  put_num(b + 1, z / 60, 2);
  put_num(b + 3, z % 60, 2);
  return 5;
}

int cad__date_format(cad__ev_t *e, const cad__step_t *st, const cad_hl7_dtm_t *t, cad_str_t *out) {
  size_t cap = st->date_mode == DATE_FORMAT ? strlen(st->fmt) * 6 + 32 : 40;
  char *buf = cad_arena_alloc(e->a, cap);
  if (!buf) return cad__internal(e, CAD_E_NOMEM);
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

/* map, replace, upper, lower, trim, format_date: the new value of one match
 * (which holds a value).  Sets *set = false when nothing is to change, *raw
 * when nv is ER7 already (otherwise it is plain text, to be escaped). */
static int value_op(cad__ev_t *e, const cad__step_t *st, const cad_hl7_path_t *p,
                    const cad_hl7_match_t *mt, cad_str_t *nvp, bool *setp, bool *rawp) {
  /* A map writes plain text (or nothing, or empty) whatever the match held. */
  bool leaf = st->kind == S_MAP || cad_hl7_is_leaf(p, mt);
  cad_str_t v, nv = {"", 0};
  if (!cad__plain_value(mt, &v) && !cad_hl7_value(p, mt, e->a, &v))
    return cad__internal(e, CAD_E_NOMEM);
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
        cad_hl7_path_t q = *p;
        q.occ = mt->occ;
        if (q.rep == CAD_HL7_ALL) q.rep = mt->rep;
        cad_hl7_path_format(&q, where, sizeof where);
        char tmp[200];
        snprintf(tmp, sizeof tmp, "%s: code not in table '%s'", where, st->table->name);
        return cad__step_fail(e, CAD_E_NOTFOUND, 103, mt, p, tmp);
      }
      break;
    case S_REPLACE:
      if ((rc = regex_replace(e, st, v, &nv))) return rc;
      break;
    case S_UPPER:
    case S_LOWER: {
      char *b = cad_arena_alloc(e->a, v.len + 1);
      if (!b) return cad__internal(e, CAD_E_NOMEM);
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
      cad_hl7_dtm_t tm;
      if (!leaf || !cad_hl7_dtm_parse(v.p, v.len, &tm)) {
        char where[96], tmp[200];
        cad_hl7_path_t q = *p;
        q.occ = mt->occ;
        if (q.rep == CAD_HL7_ALL) q.rep = mt->rep;
        cad_hl7_path_format(&q, where, sizeof where);
        snprintf(tmp, sizeof tmp, "%s: not an HL7 date/time", where);
        return cad__step_fail(e, CAD_E_INVAL, 102, mt, p, tmp);
      }
      if ((rc = cad__date_format(e, st, &tm, &nv))) return rc;
      raw = false;
      break;
    }
    default: set = false;
  }
  *nvp = nv;
  *setp = set;
  *rawp = raw;
  return 0;
}

/* map, replace, upper, lower, trim, format_date: one new value per match. */
static int step_per_match(cad__ev_t *e, const cad__step_t *st) {
  cad_hl7_path_t p = st->path.p;
  cad_hl7_iter_t it;
  cad_hl7_match_t mt;
  cad_hl7_iter_init(&it, e->m, &p);
  while (cad_hl7_iter_next(&it, &mt)) {
    if (cad__kind(&mt) != CAD_HL7_VALUE) continue; /* nothing to change */
    cad_str_t nv;
    bool set, raw;
    int rc = value_op(e, st, &p, &mt, &nv, &set, &raw);
    if (rc) return rc;
    if (!set) continue;
    if ((rc = seg_set(e, mt.seg_index, &p, p.rep == CAD_HL7_ALL ? mt.rep : p.rep, nv, raw)))
      return rc;
  }
  return 0;
}

static int step_delete(cad__ev_t *e, const cad__step_t *st) {
  cad_hl7_msg_t *m = e->m;
  uint32_t *del = NULL;
  uint32_t nd = 0;
  int occ = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    if (m->segs[i].id != st->segid) continue;
    occ++;
    if (st->when) {
      cad__ctx_t cx = {st->segid, occ, (int)i};
      int h = cad__cond_eval(e, st->when, &cx);
      if (h < 0) return h;
      if (!h) continue;
    }
    if (!del) {
      del = cad_arena_alloc(e->a, (size_t)m->nsegs * sizeof *del);
      if (!del) return cad__internal(e, CAD_E_NOMEM);
    }
    del[nd++] = i;
  }
  while (nd > 0) {
    int rc = cad_hl7_seg_delete(m, del[--nd]);
    if (rc < 0) return cad__internal(e, rc);
  }
  return 0;
}

static int step_add(cad__ev_t *e, const cad__step_t *st) {
  cad_str_t v;
  int rc = tpl_build(e, &st->tpl, &CAD__NO_CTX, true, &v);
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
    return cad__step_fail(e, CAD_E_INVAL, 207, NULL, NULL, "the new segment has a line break");
  rc = cad_hl7_seg_insert(e->m, pos, v.p, v.len);
  return rc < 0 ? cad__internal(e, rc) : 0;
}

static int step_rename(cad__ev_t *e, const cad__step_t *st) {
  for (uint32_t i = 0; i < e->m->nsegs; i++) {
    if (e->m->segs[i].id != st->segid) continue;
    int rc = cad_hl7_seg_rename(e->m, i, st->to);
    if (rc < 0) return cad__internal(e, rc);
  }
  return 0;
}

/* Does repetition r (raw) of a segment with delimiters d hold every value
 * the select asks for?  1, 0, or a negative error. */
static int select_match(cad__ev_t *e, const cad__select_t *sel, const cad_hl7_delims_t *d,
                        cad_str_t r) {
  for (size_t i = 0; i < sel->ncrit; i++) {
    cad_str_t raw, v;
    if (!cad_hl7_piece(r, d->comp, sel->crit[i].comp, &raw)) raw = (cad_str_t){"", 0};
    if (!cad_hl7_decode(d, raw, e->a, &v)) return cad__internal(e, CAD_E_NOMEM);
    bool any = false;
    for (size_t j = 0; j < sel->crit[i].nvals && !any; j++)
      any = cad_str_eq(v, sel->crit[i].vals[j]);
    if (!any) return 0;
  }
  return 1;
}

/* select: per occurrence, the field keeps the repetitions that match, in
 * their order; none matching: `missing` (keep, clear, reject). */
static int step_select(cad__ev_t *e, const cad__step_t *st) {
  const cad_hl7_path_t *p = &st->path.p;
  const cad__select_t *sel = st->sel;
  occ_it_t it = {0, 0, false};
  for (int i; (i = occ_next(e->m, p, &it)) >= 0;) {
    const cad_hl7_seg_t *s = &e->m->segs[i];
    const cad_hl7_delims_t *d = &s->d;
    cad_str_t f;
    if (!cad_hl7_field(s, p->field, &f) || f.len == 0) f = (cad_str_t){"", 0};
    int nrep = d->rep ? cad_hl7_npieces(f, d->rep) : 1;
    char *buf = cad_arena_alloc(e->a, f.len + 1);
    if (!buf) return cad__internal(e, CAD_E_NOMEM);
    size_t o = 0;
    int kept = 0;
    for (int r = 1; r <= nrep; r++) {
      cad_str_t rv;
      if (!d->rep || !cad_hl7_piece(f, d->rep, r, &rv)) rv = f;
      int h = select_match(e, sel, d, rv);
      if (h < 0) return h;
      if (!h) continue;
      if (kept++) buf[o++] = d->rep;
      memcpy(buf + o, rv.p, rv.len);
      o += rv.len;
    }
    if (kept == nrep) continue; /* every repetition matches: unchanged */
    if (kept == 0 && sel->missing == MISSING_KEEP) continue;
    if (kept == 0 && sel->missing == MISSING_REJECT) {
      char where[64], why[200];
      cad_hl7_path_t q = *p;
      q.occ = it.occ;
      cad_hl7_path_format(&q, where, sizeof where);
      snprintf(why, sizeof why, "%s: no repetition with the values 'select' asks for", where);
      cad_hl7_match_t mt = {.seg_index = (uint32_t)i, .occ = it.occ, .present = true};
      return cad__step_fail(e, CAD_E_NOTFOUND, 101, &mt, p, why);
    }
    int rc = seg_set(e, (uint32_t)i, p, 0, (cad_str_t){buf, o}, true);
    if (rc) return rc;
  }
  return 0;
}

static int apply_step(cad__ev_t *e, const cad__step_t *st) {
  switch (st->kind) {
    case S_SET_VALUE: return step_set_value(e, st);
    case S_SET_TEMPLATE:
    case S_MOVE: return step_template(e, st);
    case S_CLEAR: {
      int rc = cad_hl7_clear(e->m, &st->path.p);
      return rc < 0 ? cad__internal(e, rc) : 0;
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
    case S_SELECT: return step_select(e, st);
  }
  return 0;
}

/* ---- fused runs -----------------------------------------------------------
 *
 * A run of steps that all write one segment's fields (the same segment id and
 * occurrence, e.g. five steps on OBX[*]-3.x) and read nothing of its other
 * occurrences is applied one occurrence at a time: each field the run touches
 * is taken apart into the components of its first repetition once, every step
 * reads and replaces components, and the field is put together once at the
 * end.  Step by step, each edit would scan and copy the whole field again.
 *
 * The result is the same because no step of such a run looks at another
 * occurrence of its segment, and no step writes anything else: applying steps
 * 1..n to occurrence 1, then to occurrence 2, ... leaves every occurrence as
 * applying step 1 to all of them, then step 2, ... does.  cad__route_plan()
 * decides which runs qualify; tests/unit/routes/test_routes.c and the route fuzzer
 * compare both paths.  A run on a segment the message does not have is
 * applied step by step in place (a `set` may add the segment).  Whatever a
 * fused run cannot do (a step fails, a field with more than WS_COMPS
 * components, more than WS_FIELDS fields touched in one occurrence) makes it
 * give up with CAD__REDO; the route is then applied step by step from a fresh
 * copy, with the arena rewound to before the attempt. */

#define WS_FIELDS CAD__WS_FIELDS /* fields one run may touch (a longer list ends the run) */
#define WS_COMPS CAD__WS_COMPS   /* components of a field held apart */

/* One field of the occurrence being written. */
typedef struct wsf {
  bool present;             /* the segment has this field (or a step wrote it) */
  bool split;               /* comp[] and rest hold the field */
  bool text_ok;             /* text holds the field */
  bool dirty;               /* written: put back at the end */
  int field;                /* field number (standard numbering) */
  uint32_t ncomp;           /* split: how many of comp[] */
  cad_str_t text;           /* raw ER7 of the whole field */
  cad_str_t rest;           /* split: from the first repetition separator on, or empty */
  cad_str_t comp[WS_COMPS]; /* split: the first repetition's components */
} wsf_t;

/* The occurrence being written: its fields by the slots cad__route_plan()
 * gave them, taken from the segment on first use. */
typedef struct cad__ws {
  uint32_t seg; /* index of the occurrence in the message */
  int occ;
  const cad_hl7_seg_t *s; /* e->m->segs[seg] */
  bool std;               /* s has the standard delimiters */
  uint32_t loaded;        /* bit k: f[k] holds its field */
  wsf_t f[WS_FIELDS];
} ws_t;

/* Slot `slot`, holding field `field` of the current occurrence. */
static inline CAD__INLINE wsf_t *ws_field(cad__ev_t *e, int slot, int field) {
  ws_t *ws = e->ws;
  wsf_t *f = &ws->f[slot];
  if (ws->loaded & (1u << slot)) return f;
  ws->loaded |= 1u << slot;
  f->field = field;
  f->dirty = false;
  /* As an earlier run left it (overlay), else as the segment has it. */
  const cad__fedit_t *ed = e->ov ? cad__overlay_get(e->ov, ws->seg, field) : NULL;
  if (ed && ed->ncomp) {
    /* Left as components (routes_recipe.c): taken apart already. */
    f->present = true;
    f->ncomp = ed->ncomp;
    memcpy(f->comp, ed->comp, ed->ncomp * sizeof *f->comp);
    f->rest = ed->rest;
    f->split = true;
    f->text_ok = false;
    return f;
  }
  if (ed) f->text = ed->text;
  f->present = ed || cad_hl7_field(ws->s, field, &f->text);
  if (!f->present) f->text = (cad_str_t){"", 0};
  f->text_ok = true;
  f->split = false;
  return f;
}

static inline CAD__INLINE int ws_split(wsf_t *f, const cad_hl7_delims_t *d) {
  if (f->split) return 0;
  /* Components up to the first repetition separator.  A separator that is
   * not declared (0) splits nothing, as on the stepwise path. */
  const char *cp[WS_COMPS];
  size_t cl[WS_COMPS];
  int rc = cad__split_comps(f->text, NULL, d->comp, d->rep, cp, cl, &f->ncomp, &f->rest);
  if (rc) return rc;
  for (uint32_t k = 0; k < f->ncomp; k++) f->comp[k] = (cad_str_t){cp[k], cl[k]};
  f->split = true;
  return 0;
}

/* Put a split field's text together (into the arena). */
static int ws_join(cad__ev_t *e, wsf_t *f, const cad_hl7_delims_t *d) {
  if (f->text_ok) return 0;
  size_t total = f->ncomp - 1 + f->rest.len;
  for (uint32_t k = 0; k < f->ncomp; k++) total += f->comp[k].len;
  char *b = cad_arena_alloc(e->a, total + 1);
  if (!b) return CAD_E_NOMEM;
  char *o = b + cad_copy_small(b, f->comp[0].p, f->comp[0].len);
  for (uint32_t k = 1; k < f->ncomp; k++) {
    *o++ = d->comp;
    o += cad_copy_small(o, f->comp[k].p, f->comp[k].len);
  }
  o += cad_copy_small(o, f->rest.p, f->rest.len);
  f->text = (cad_str_t){b, (size_t)(o - b)};
  f->text_ok = true;
  return 0;
}

static inline bool comp_level(const cad_hl7_path_t *p, int rep) {
  return p->comp > 0 && p->sub == 0 && (rep == 0 || rep == 1);
}

/* The match of path p (its field, repetition rep, component, subcomponent)
 * in the current occurrence, as cad_hl7_iter_next() would give it; the field
 * is in slot `slot`. */
static int ws_read(cad__ev_t *e, int slot, const cad_hl7_path_t *p, int rep, cad_hl7_match_t *mt) {
  ws_t *ws = e->ws;
  wsf_t *f = ws_field(e, slot, p->field);
  mt->seg_index = ws->seg;
  mt->occ = ws->occ;
  mt->rep = rep;
  mt->d = &ws->s->d;
  mt->raw = (cad_str_t){NULL, 0};
  mt->present = false;
  if (!f->present) return 0;
  int rc;
  if (comp_level(p, rep)) {
    if ((rc = ws_split(f, mt->d))) return rc;
    if ((uint32_t)p->comp <= f->ncomp) {
      mt->raw = f->comp[p->comp - 1];
      mt->present = true;
    }
    return 0;
  }
  if ((rc = ws_join(e, f, mt->d))) return cad__internal(e, rc);
  mt->present = cad_hl7_resolve_in_field(f->text, mt->d, p, rep, &mt->raw);
  if (!mt->present) mt->raw = (cad_str_t){NULL, 0};
  return 0;
}

/* v holds a or b (values are short: a loop, not memchr). */
static bool has_either(cad_str_t v, char a, char b) {
  for (size_t i = 0; i < v.len; i++)
    if ((v.p[i] == a && a) || (v.p[i] == b && b)) return true;
  return false;
}

/* Write raw ER7 at the target of step st (a whole field, or a component of
 * its first repetition: see fusable()). */
static inline CAD__INLINE int ws_write(cad__ev_t *e, const cad__step_t *st, cad_str_t val) {
  const cad_hl7_path_t *p = &st->path.p;
  const cad_hl7_delims_t *d = &e->ws->s->d;
  wsf_t *f = ws_field(e, st->slot, p->field);
  f->present = f->dirty = true;
  if (p->comp == 0) {
    f->text = val;
    f->text_ok = true;
    f->split = false;
    return 0;
  }
  int rc;
  if ((rc = ws_split(f, d))) return rc;
  uint32_t c = (uint32_t)p->comp;
  if (c > WS_COMPS || (c > f->ncomp && !d->comp)) return CAD__REDO;
  while (f->ncomp < c) f->comp[f->ncomp++] = (cad_str_t){"", 0};
  f->comp[c - 1] = val;
  f->text_ok = false;
  if (!st->plain_out && has_either(val, d->comp, d->rep)) {
    /* ER7 with separators of its own: the field's structure changed, so
     * later steps must see it taken apart anew (as the stepwise path does). */
    if ((rc = ws_join(e, f, d))) return cad__internal(e, rc);
    f->split = false;
  }
  return 0;
}

/* Put every written field back: into the overlay, or the copy's tree. */
static int ws_commit(cad__ev_t *e) {
  ws_t *ws = e->ws;
  const cad_hl7_delims_t *d = &ws->s->d;
  for (uint32_t m = ws->loaded; m; m &= m - 1) {
    wsf_t *f = &ws->f[__builtin_ctz(m)];
    if (!f->dirty) continue;
    int rc = ws_join(e, f, d);
    if (!rc && e->ov) {
      rc = cad__overlay_put(e->ov, e->a, ws->seg, f->field, f->text);
    } else if (!rc) {
      cad_hl7_path_t whole = {.field = f->field};
      rc = cad_hl7_seg_set(e->m, ws->seg, &whole, 0, f->text.p, f->text.len, CAD_HL7_SET_RAW);
    }
    if (rc) return cad__internal(e, rc);
  }
  return 0;
}

/* One step of a fused run on the current occurrence. */
static int fused_step(cad__ev_t *e, const cad__step_t *st, const cad__ctx_t *cx) {
  const cad_hl7_path_t *p = &st->path.p;
  const cad_hl7_delims_t *d = &e->ws->s->d;
  cad_str_t v;
  int rc;
  switch (st->kind) {
    case S_SET_VALUE:
      v = st->value;
      if (!(st->value_std_plain && e->ws->std) && (rc = encode(e, d, &v))) return rc;
      return ws_write(e, st, v);
    case S_SET_TEMPLATE:
      if (st->tpl.n == 1 && st->tpl.parts[0].slot >= 0) {
        /* A copy within the occurrence: the source as the run has left it,
         * its text as it is (values are never changed in place). */
        const cad_hl7_path_t *q = &st->tpl.parts[0].path.p;
        cad_hl7_match_t mt;
        if ((rc = ws_read(e, st->tpl.parts[0].slot, q, q->rep == CAD_HL7_ALL ? 1 : q->rep, &mt)))
          return rc;
        return ws_write(e, st, mt.present ? mt.raw : (cad_str_t){"", 0});
      }
      if ((rc = tpl_build(e, &st->tpl, cx, false, &v))) return rc;
      return ws_write(e, st, v);
    default: {
      cad_hl7_match_t mt;
      if ((rc = ws_read(e, st->slot, p, p->rep, &mt))) return rc;
      if (cad__kind(&mt) != CAD_HL7_VALUE) return 0;
      bool set, raw;
      if ((rc = value_op(e, st, p, &mt, &v, &set, &raw))) return rc;
      if (!set) return 0;
      if (!raw && (rc = encode(e, d, &v))) return rc;
      return ws_write(e, st, v);
    }
  }
}

/* ---- component-level runs ----
 *
 * Most runs only set, copy and map components of their segment's fields
 * (the five OBX steps of examples/lab-to-ehr).  Such steps have a form that
 * works on the components directly (cad__step_t.cop, routes_int.h): no
 * match is built, no path is looked at again.  What they do is what
 * fused_step() does.  A field the occurrence lacks is read as empty text
 * split into one empty component, which every one of these reads as
 * fused_step() reads the absent field (an empty value: a copy writes it, a
 * map leaves it).  On a segment with the standard delimiters the run is
 * applied from its recipe instead (routes_recipe.c), which gives what
 * comps_steps() gives. */

/* Slot `slot` for field `field`, taken apart into components. */
static inline CAD__INLINE int comps_of(cad__ev_t *e, int slot, int field, wsf_t **out) {
  wsf_t *f = ws_field(e, slot, field);
  *out = f;
  return ws_split(f, &e->ws->s->d);
}

/* Component c (1-based) of split field f becomes v (raw ER7 without
 * component or repetition separators). */
static inline CAD__INLINE int comp_write(wsf_t *f, uint32_t c, cad_str_t v, char cs) {
  uint32_t n = f->ncomp;
  if (c > n) {
    if (c > WS_COMPS || !cs) return CAD__REDO;
    for (; n < c - 1; n++) f->comp[n] = (cad_str_t){"", 0};
    f->ncomp = c;
  }
  f->comp[c - 1] = v;
  f->text_ok = false;
  f->present = f->dirty = true;
  return 0;
}

/* `map` of component c of field f: 0 (written or left), or CAD__REDO. */
static inline CAD__INLINE int comp_map(cad__ev_t *e, const cad__step_t *st, wsf_t *f, uint32_t c) {
  if (c > f->ncomp) return 0; /* absent: nothing to map */
  cad_hl7_match_t mt = {.raw = f->comp[c - 1], .present = true, .d = &e->ws->s->d};
  if (cad__kind(&mt) != CAD_HL7_VALUE) return 0;
  cad_str_t v, nv;
  if (!cad__plain_value(&mt, &v) && !cad_hl7_value(&st->path.p, &mt, e->a, &v)) return CAD__REDO;
  if (!cad__table_get(st->table, v.p, v.len, &nv)) {
    if (st->dflt == DFLT_KEEP) return 0;
    if (st->dflt == DFLT_EMPTY) nv = (cad_str_t){"", 0};
    else if (st->dflt == DFLT_VALUE) nv = st->value;
    else return CAD__REDO; /* reject: reported by the stepwise path */
  }
  bool plain =
      e->ws->std && (st->dflt == DFLT_VALUE ? st->value_std_plain && st->table->vals_std_plain
                                            : st->table->vals_std_plain);
  if (!plain && encode(e, mt.d, &nv)) return CAD__REDO;
  return comp_write(f, c, nv, mt.d->comp);
}

/* The steps of a component-level run on the current occurrence. */
static int comps_steps(cad__ev_t *e, const cad__step_t *st, size_t n) {
  const cad_hl7_delims_t *d = &e->ws->s->d;
  for (size_t k = 0; k < n; k++, st++) {
    const cad_hl7_path_t *p = &st->path.p;
    wsf_t *f, *src;
    cad_str_t v;
    int rc = comps_of(e, st->slot, p->field, &f);
    if (rc) return rc;
    switch (st->cop) {
      case COP_SET:
        v = st->value;
        if (!(st->value_std_plain && e->ws->std) && encode(e, d, &v)) return CAD__REDO;
        rc = comp_write(f, (uint32_t)p->comp, v, d->comp);
        break;
      case COP_COPY: {
        const cad__tpart_t *tp = &st->tpl.parts[0];
        uint32_t c = (uint32_t)tp->path.p.comp;
        if ((rc = comps_of(e, tp->slot, tp->path.p.field, &src))) return rc;
        v = c <= src->ncomp ? src->comp[c - 1] : (cad_str_t){"", 0};
        rc = comp_write(f, (uint32_t)p->comp, v, d->comp);
        break;
      }
      default: rc = comp_map(e, st, f, (uint32_t)p->comp);
    }
    if (rc) return rc;
  }
  return 0;
}

/* The component-level form of a step in a fused run, or 0. */
static uint8_t comp_form(const cad__step_t *st) {
  const cad_hl7_path_t *p = &st->path.p;
  if (p->comp == 0) return 0; /* fusable(): a component of the first repetition */
  switch (st->kind) {
    case S_SET_VALUE: return COP_SET;
    case S_MAP: return COP_MAP;
    case S_SET_TEMPLATE: {
      if (st->tpl.n != 1 || st->tpl.parts[0].slot < 0) return 0;
      const cad_hl7_path_t *q = &st->tpl.parts[0].path.p;
      int rep = q->rep == CAD_HL7_ALL ? 1 : q->rep;
      return comp_level(q, rep) ? COP_COPY : 0;
    }
    default: return 0;
  }
}

/* Steps st[0..n), a fused run: 0, or CAD__REDO. */
static int run_fused(cad__ev_t *e, const cad__step_t *st, size_t n) {
  const cad_hl7_path_t *p = &st->path.p;
  ws_t ws;
  occ_it_t it = {0, 0, false};
  bool any = false;
  for (int i; (i = occ_next(e->m, p, &it)) >= 0;) {
    any = true;
    if (st->recipe && cad__std_delims(&e->m->segs[i].d)) {
      if (st->defer && e->ov) {
        /* Applied while the output is written: no edits kept. */
        cad__overlay_defer(e->ov, (uint32_t)i, st->recipe,
                           cad__recipe_hint(st->recipe, e->m, (uint32_t)i));
        continue;
      }
      if (cad__recipe_apply(e, st->recipe, (uint32_t)i, NULL)) return CAD__REDO;
      continue;
    }
    ws.seg = (uint32_t)i;
    ws.occ = it.occ;
    ws.s = &e->m->segs[i];
    ws.std = cad__std_delims(&ws.s->d);
    ws.loaded = 0;
    e->ws = &ws;
    cad__ctx_t cx = {p->segid, it.occ, i};
    int rc = 0;
    if (st->comps_only) rc = comps_steps(e, st, n);
    else
      for (size_t k = 0; k < n && !rc; k++) rc = fused_step(e, &st[k], &cx);
    if (!rc) rc = ws_commit(e);
    e->ws = NULL;
    if (rc) return CAD__REDO;
  }
  if (any) return 0;
  /* No occurrence: a `set` may add the segment, and the steps after it
   * then apply to the new one.  Nothing was done in the fused form, so the
   * steps one by one here are exactly the stepwise path; edits beside the
   * message (overlay) cannot add a segment: the tree is needed. */
  if (e->ov) return CAD__REDO;
  for (size_t k = 0; k < n; k++)
    if (apply_step(e, &st[k]) < 0) return CAD__REDO;
  return 0;
}

/* A target a fused run can write: a whole field, or a component of its first
 * repetition; not MSH-1/MSH-2. */
static bool fusable_target(const cad_hl7_path_t *p) {
  bool header = cad_hl7_is_header_id(p->segid);
  if (p->field <= 0 || (header && p->field <= 2) || p->sub != 0) return false;
  if (p->comp == 0) return p->rep == 0;
  return p->rep == 0 || p->rep == 1;
}

static bool fusable(const cad__step_t *st) {
  switch (st->kind) {
    case S_SET_VALUE:
    case S_MAP:
    case S_REPLACE:
    case S_UPPER:
    case S_LOWER:
    case S_TRIM:
    case S_DATE: return fusable_target(&st->path.p);
    case S_SET_TEMPLATE:
      if (!fusable_target(&st->path.p)) return false;
      /* Its own segment only as the occurrence being written. */
      for (size_t i = 0; i < st->tpl.n; i++) {
        const cad__tpart_t *tp = &st->tpl.parts[i];
        if (!tp->is_path || tp->path.p.segid != st->path.p.segid) continue;
        if (!tp->path.relative || !fusable_target(&(cad_hl7_path_t){.segid = tp->path.p.segid,
                                                                    .field = tp->path.p.field}))
          return false;
      }
      return true;
    default: return false;
  }
}

/* Does what step st writes (in a fused run) never hold the component or
 * repetition separator of the segment written?  A `set` value and the
 * results of `map` and `format_date` are escaped for the segment before they
 * are written; a copy of a component of the same occurrence was cut at those
 * separators.  Anything else is looked at when written (ws_write). */
static bool plain_output(const cad__step_t *st) {
  switch (st->kind) {
    case S_SET_VALUE:
    case S_MAP:
    case S_DATE: return true;
    case S_SET_TEMPLATE:
      return st->tpl.n == 1 && st->tpl.parts[0].slot >= 0 &&
             comp_level(&st->tpl.parts[0].path.p, st->tpl.parts[0].path.p.rep == CAD_HL7_ALL
                                                      ? 1
                                                      : st->tpl.parts[0].path.p.rep);
    default: return false;
  }
}

/* The slot of field `field` among slots[0..*n) of a run, added when new;
 * -1 when the run has no room left. */
static int slot_of(int *slots, size_t *n, int field) {
  for (size_t k = 0; k < *n; k++)
    if (slots[k] == field) return (int)k;
  if (*n == WS_FIELDS) return -1;
  slots[*n] = field;
  return (int)(*n)++;
}

/* Give step st (of a run on segment segid) and the fields of that segment
 * its template reads their slots; false (nothing changed) when the run has
 * no room for them. */
static bool assign_slots(cad__step_t *st, uint32_t segid, int *slots, size_t *n) {
  int keep[WS_FIELDS];
  size_t had = *n;
  memcpy(keep, slots, sizeof keep);
  int s = slot_of(slots, n, st->path.p.field);
  bool ok = s >= 0;
  for (size_t i = 0; ok && st->kind == S_SET_TEMPLATE && i < st->tpl.n; i++) {
    const cad__tpart_t *tp = &st->tpl.parts[i];
    if (tp->is_path && tp->path.p.segid == segid) ok = slot_of(slots, n, tp->path.p.field) >= 0;
  }
  if (!ok) {
    memcpy(slots, keep, sizeof keep);
    *n = had;
    return false;
  }
  st->slot = s;
  for (size_t i = 0; st->kind == S_SET_TEMPLATE && i < st->tpl.n; i++) {
    cad__tpart_t *tp = &st->tpl.parts[i];
    if (tp->is_path && tp->path.p.segid == segid) tp->slot = slot_of(slots, n, tp->path.p.field);
  }
  st->plain_out = plain_output(st);
  st->cop = comp_form(st);
  st->value_std_plain = cad__std_plain(st->value.p, st->value.len);
  return true;
}

/* Can the route's edits be kept beside the message (routes_overlay.c)?
 * Every step must be in a fused run (they only rewrite fields of existing
 * segments, one occurrence at a time), and a template may read another
 * segment only when no earlier run writes that segment, since a run reads the
 * message as received for any segment but its own. */
static bool overlay_ok(const cad__route_t *rt) {
  uint32_t written[64];
  size_t nw = 0;
  for (size_t i = 0; i < rt->nsteps;) {
    const cad__step_t *st = &rt->steps[i];
    if (!st->fuse) return false;
    for (size_t k = i; k < i + st->fuse; k++) {
      const cad__tpl_t *t = &rt->steps[k].tpl;
      for (size_t j = 0; j < t->n; j++) {
        const cad__tpart_t *tp = &t->parts[j];
        if (!tp->is_path || tp->path.p.segid == st->path.p.segid) continue;
        for (size_t w = 0; w < nw; w++)
          if (written[w] == tp->path.p.segid) return false;
      }
    }
    if (nw == sizeof written / sizeof written[0]) return false;
    written[nw++] = st->path.p.segid;
    i += st->fuse;
  }
  return rt->nsteps > 0;
}

void cad__route_plan(cad__route_t *rt, cad_arena_t *a) {
  for (size_t i = 0; i < rt->nsteps; i++) {
    cad__step_t *st = &rt->steps[i];
    st->fuse = 0;
    st->slot = 0;
    st->plain_out = false;
    st->cop = 0;
    st->comps_only = false;
    st->recipe = NULL;
    st->defer = false;
    for (size_t k = 0; k < st->tpl.n; k++) st->tpl.parts[k].slot = -1;
  }
  for (size_t i = 0; i < rt->nsteps;) {
    cad__step_t *first = &rt->steps[i];
    int slots[WS_FIELDS];
    size_t nslots = 0;
    if (!fusable(first) || !assign_slots(first, first->path.p.segid, slots, &nslots)) {
      i++;
      continue;
    }
    const cad_hl7_path_t *p = &first->path.p;
    size_t j = i + 1;
    while (j < rt->nsteps && fusable(&rt->steps[j]) && rt->steps[j].path.p.segid == p->segid &&
           rt->steps[j].path.p.occ == p->occ &&
           assign_slots(&rt->steps[j], p->segid, slots, &nslots))
      j++;
    first->fuse = (uint32_t)(j - i);
    first->comps_only = true;
    for (size_t k = i; k < j; k++) first->comps_only &= rt->steps[k].cop != 0;
    cad__recipe_plan(first, j - i, a);
    i = j;
  }
  rt->overlay = overlay_ok(rt);
  /* A recipe whose segment no other run of the route edits can wait until
   * the output is written (nothing else reads what it writes). */
  for (size_t i = 0; rt->overlay && i < rt->nsteps; i += rt->steps[i].fuse) {
    cad__step_t *st = &rt->steps[i];
    bool alone = st->recipe != NULL;
    for (size_t j = 0; alone && j < rt->nsteps; j += rt->steps[j].fuse)
      alone = j == i || rt->steps[j].path.p.segid != st->path.p.segid;
    st->defer = alone;
  }
}

int cad__steps_apply(cad__ev_t *e, const cad__route_t *rt, bool fused, size_t *failed) {
  bool fused_any = false;
  for (size_t s = 0; s < rt->nsteps;) {
    const cad__step_t *st = &rt->steps[s];
    if (fused && st->fuse) {
      if (run_fused(e, st, st->fuse)) return CAD__REDO;
      fused_any = true;
      s += st->fuse;
      continue;
    }
    if (apply_step(e, st) < 0) {
      /* After a fused run, report the error as the stepwise path does. */
      if (fused_any) return CAD__REDO;
      *failed = s;
      return e->rc < 0 ? e->rc : CAD_E_INVAL;
    }
    s++;
  }
  return 0;
}
