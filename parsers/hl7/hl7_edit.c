/* hl7_edit.c - changing a parsed message: set, clear, delete, insert, rename.
 *
 * A changed segment gets a private field array in the arena (copy on first
 * write); a changed field gets new text in the arena.  The input bytes are
 * never written.
 */
#include <string.h>

#include "cad_error.h"
#include "hl7.h"
#include "hl7_int.h"

/* Give segment s a private field array with room for at least `need` spans. */
static int seg_own_fields(cad_hl7_msg_t *m, cad_hl7_seg_t *s, uint32_t need) {
  if (s->fields_cap >= need && s->fields_cap != 0) return 0;
  uint32_t cap = (need < s->nfields ? s->nfields : need) + 4;
  cad_str_t *nf = cad_arena_alloc(m->arena, (size_t)cap * sizeof *nf);
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
  else b = end;
  *lo = a;
  *hi = b;
  return true;
}

/* New text of field f after setting its element (rep, comp, sub) to val
 * (already encoded), adding separators where the element does not exist, in
 * one pass and one allocation.  CAD_E_INVAL when a separator it must add is
 * not declared. */
static int rewrite(cad_arena_t *a, const cad_hl7_delims_t *d, cad_str_t f, int rep, int comp,
                   int sub, cad_str_t val, cad_str_t *out) {
  if (rep == 0 && comp == 0) {
    *out = val;
    return 0;
  }
  const char seps[3] = {d->rep, d->comp, d->sub};
  int want[3] = {rep > 0 ? rep : 1, comp, comp > 0 ? sub : 0};
  size_t lo = 0, hi = f.len;
  char pad[3] = {0, 0, 0};
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
  char *b = cad_arena_alloc(a, total + 1);
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

int cad__hl7_encode(const cad_hl7_delims_t *d, cad_str_t text, cad_arena_t *a, cad_str_t *out) {
  bool plain = true;
  for (size_t i = 0; i < text.len && plain; i++) {
    char c = text.p[i];
    plain = !(c == d->field || c == d->comp || c == d->rep || c == '\r' || c == '\n' ||
              (d->esc && c == d->esc) || (d->sub && c == d->sub) || (d->trunc && c == d->trunc));
  }
  if (plain) {
    *out = text;
    return 0;
  }
  char *b = cad_arena_alloc(a, text.len * 5 + 1);
  if (!b) return CAD_E_NOMEM;
  out->len = cad_hl7_escape(d, text.p, text.len, b);
  out->p = b;
  return 0;
}

/* The delimiters in force for a segment placed at index i: those of the
 * segment before it (a batch may change them at every header). */
static const cad_hl7_delims_t *delims_at(const cad_hl7_msg_t *m, uint32_t i) {
  return i > 0 && i <= m->nsegs ? &m->segs[i - 1].d : &m->d;
}

static int append_segment(cad_hl7_msg_t *m, const char *id) {
  char raw[4] = {id[0], id[1], id[2], 0};
  return cad_hl7_seg_insert(m, m->nsegs, raw, 3);
}

/* Set element (p->field, rep, p->comp, p->sub) of segment si to val (ER7). */
static int set_one(cad_hl7_msg_t *m, uint32_t si, const cad_hl7_path_t *p, int rep, cad_str_t val) {
  cad_hl7_seg_t *s = &m->segs[si];
  if (p->field <= 0 || (s->header && p->field <= 2)) return CAD_E_INVAL;
  uint32_t idx = s->header ? (uint32_t)p->field - 1 : (uint32_t)p->field;
  int rc = seg_own_fields(m, s, idx + 1);
  if (rc) return rc;
  while (s->nfields <= idx) s->fields[s->nfields++] = (cad_str_t){"", 0};
  cad_str_t nf;
  if ((rc = rewrite(m->arena, &s->d, s->fields[idx], rep, p->comp, p->sub, val, &nf))) return rc;
  s->fields[idx] = nf;
  s->dirty = true;
  m->dirty = true;
  return 0;
}

int cad_hl7_seg_set(cad_hl7_msg_t *m, uint32_t si, const cad_hl7_path_t *p, int rep,
                    const char *val, size_t len, unsigned flags) {
  if (si >= m->nsegs) return CAD_E_NOTFOUND;
  cad_str_t v = {val, len};
  if (!(flags & CAD_HL7_SET_RAW)) {
    int rc = cad_hl7_encode(&m->segs[si].d, v, m->arena, &v);
    if (rc) return rc;
  }
  return set_one(m, si, p, rep, v);
}

/* Every repetition when p->rep is [*], else the one p names: the count. */
static int set_in_seg(cad_hl7_msg_t *m, uint32_t si, const cad_hl7_path_t *p, cad_str_t val) {
  if (p->rep != CAD_HL7_ALL) {
    int rc = set_one(m, si, p, p->rep, val);
    return rc < 0 ? rc : 1;
  }
  cad_str_t f;
  int nrep = cad_hl7_field(&m->segs[si], p->field, &f) ? cad_hl7_npieces(f, m->segs[si].d.rep) : 1;
  for (int r = 1; r <= nrep; r++) {
    int rc = set_one(m, si, p, r, val);
    if (rc < 0) return rc;
  }
  return nrep;
}

int cad_hl7_set(cad_hl7_msg_t *m, const cad_hl7_path_t *p, const char *val, size_t len,
                unsigned flags) {
  if (p->field == 0) return CAD_E_INVAL;
  cad_str_t v = {val, len};
  /* Encode once with the first segment's delimiters; a segment in a batch
   * with other delimiters gets its own encoding below. */
  int total = 0;
  int occ = 0;
  bool any = false;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    if (m->segs[i].id != p->segid) continue;
    occ++;
    if (p->occ != CAD_HL7_ALL && occ != p->occ) continue;
    any = true;
    cad_str_t enc = v;
    int rc = flags & CAD_HL7_SET_RAW ? 0 : cad_hl7_encode(&m->segs[i].d, v, m->arena, &enc);
    if (!rc) rc = set_in_seg(m, i, p, enc);
    if (rc < 0) return rc;
    total += rc;
    if (p->occ != CAD_HL7_ALL) break;
  }
  if (!any) {
    if (occ > 0 || (p->occ != 1 && p->occ != CAD_HL7_ALL)) return CAD_E_NOTFOUND;
    /* A header segment carries the delimiters: it is never made up. */
    if (cad_hl7_is_header_id(p->segid)) return CAD_E_NOTFOUND;
    int rc = append_segment(m, p->seg);
    if (rc < 0) return rc;
    cad_str_t enc = v;
    if (!(flags & CAD_HL7_SET_RAW))
      rc = cad_hl7_encode(delims_at(m, m->nsegs - 1), v, m->arena, &enc);
    if (!rc) rc = set_in_seg(m, m->nsegs - 1, p, enc);
    if (rc < 0) return rc;
    total += rc;
  }
  return total;
}

int cad_hl7_clear(cad_hl7_msg_t *m, const cad_hl7_path_t *p) {
  int total = 0, occ = 0;
  for (uint32_t i = 0; i < m->nsegs; i++) {
    if (m->segs[i].id != p->segid) continue;
    occ++;
    if (p->occ != CAD_HL7_ALL && occ != p->occ) continue;
    cad_str_t cur;
    /* Clearing an absent element changes nothing. */
    if (p->rep != CAD_HL7_ALL && !cad_hl7_resolve_in_seg(&m->segs[i], p, p->rep, &cur)) continue;
    int rc = set_in_seg(m, i, p, (cad_str_t){"", 0});
    if (rc < 0) return rc;
    total += rc;
  }
  return total;
}

int cad_hl7_seg_delete(cad_hl7_msg_t *m, uint32_t i) {
  if (i >= m->nsegs) return CAD_E_NOTFOUND;
  /* The segments after a header are written in its delimiters. */
  if (m->segs[i].header) return CAD_E_INVAL;
  memmove(&m->segs[i], &m->segs[i + 1], (size_t)(m->nsegs - i - 1) * sizeof m->segs[0]);
  m->nsegs--;
  m->dirty = true;
  return 0;
}

int cad_hl7_seg_insert(cad_hl7_msg_t *m, uint32_t i, const char *raw, size_t len) {
  if (i > m->nsegs) return CAD_E_INVAL;
  if (len < 3) return CAD_E_SEGMENT;
  for (int k = 0; k < 3; k++) {
    char c = raw[k];
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return CAD_E_SEGMENT;
  }
  const cad_hl7_delims_t *d = delims_at(m, i);
  if (len > 3 && raw[3] != d->field) return CAD_E_SEGMENT;
  for (size_t k = 0; k < len; k++)
    if (raw[k] == '\r' || raw[k] == '\n') return CAD_E_INVAL;
  char *copy = cad_arena_dup(m->arena, raw, len);
  if (!copy) return CAD_E_NOMEM;
  cad_hl7_delims_t dd = *d; /* m->segs may move below */
  uint32_t nf = (uint32_t)cad_hl7_npieces((cad_str_t){copy, len}, dd.field);
  uint32_t cap = nf + 4;
  cad_str_t *fields = cad_arena_alloc(m->arena, (size_t)cap * sizeof *fields);
  if (!fields) return CAD_E_NOMEM;
  for (uint32_t k = 0; k < nf; k++)
    cad_hl7_piece((cad_str_t){copy, len}, dd.field, (int)k + 1, &fields[k]);
  if (m->nsegs == m->segs_cap && cad__hl7_grow_segs(m, 8) != 0) return CAD_E_NOMEM;
  memmove(&m->segs[i + 1], &m->segs[i], (size_t)(m->nsegs - i) * sizeof m->segs[0]);
  cad_hl7_seg_t *s = &m->segs[i];
  memset(s, 0, sizeof *s);
  s->raw.p = copy;
  s->raw.len = len;
  s->fields = fields;
  s->nfields = nf;
  s->fields_cap = cap;
  memcpy(s->name, copy, 3);
  s->name[3] = 0;
  s->id = cad_hl7_segid(s->name);
  s->d = dd;
  s->offset = UINT32_MAX; /* not from the input */
  s->header = cad_hl7_is_header_id(s->id);
  s->dirty = true;
  m->nsegs++;
  m->dirty = true;
  return 0;
}

int cad_hl7_seg_rename(cad_hl7_msg_t *m, uint32_t i, const char id[3]) {
  if (i >= m->nsegs) return CAD_E_NOTFOUND;
  for (int k = 0; k < 3; k++) {
    char c = id[k];
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return CAD_E_SEGMENT;
  }
  cad_hl7_seg_t *s = &m->segs[i];
  if (s->header) return CAD_E_INVAL;
  int rc = seg_own_fields(m, s, s->nfields);
  if (rc) return rc;
  char *nid = cad_arena_dup(m->arena, id, 3);
  if (!nid) return CAD_E_NOMEM;
  s->fields[0].p = nid;
  s->fields[0].len = 3;
  memcpy(s->name, id, 3);
  s->id = cad_hl7_segid(s->name);
  s->dirty = true;
  m->dirty = true;
  return 0;
}

int cad_hl7_clone(const cad_hl7_msg_t *src, cad_arena_t *a, cad_hl7_msg_t *dst) {
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
