/* hl7_edit.c - changing a parsed message: set, clear, delete, insert, rename.
 *
 * A changed segment gets a private field array in the arena (copy on first
 * write); a changed field gets new text in the arena.  The input bytes are
 * never written.
 */
#include <string.h>

#include "cad_error.h"
#include "hl7.h"

/* Give segment s a private field array with room for at least `need` spans. */
static int seg_own_fields(cad_hl7_msg_t *m, cad_hl7_seg_t *s, uint32_t need) {
  if (s->fields_cap >= need && s->fields_cap != 0) return 0;
  uint32_t cap = need < s->nfields ? s->nfields : need;
  cap = cap + cap / 2 + 4;
  cad_str_t *nf = cad_arena_alloc(m->arena, (size_t)cap * sizeof *nf);
  if (!nf) return CAD_E_NOMEM;
  memcpy(nf, s->fields, (size_t)s->nfields * sizeof *nf);
  s->fields = nf;
  s->fields_cap = cap;
  return 0;
}

/* Replace piece n (1-based) of `in` split on `sep` with `repl`, adding
 * separators when `in` has fewer pieces.  With sep == 0 (the delimiter is
 * not declared) only piece 1 exists and is replaced whole. */
static int splice(cad_arena_t *a, cad_str_t in, char sep, int n, cad_str_t repl, cad_str_t *out) {
  if (sep == 0) {
    if (n != 1) return CAD_E_INVAL;
    *out = repl;
    return 0;
  }
  int have = cad_hl7_npieces(in, sep);
  size_t pre, post_off;
  size_t extra = 0;
  if (n <= have) {
    cad_str_t piece;
    cad_hl7_piece(in, sep, n, &piece);
    pre = (size_t)(piece.p - in.p);
    post_off = pre + piece.len;
  } else {
    pre = in.len;
    post_off = in.len;
    extra = (size_t)(n - have);
  }
  size_t total = pre + extra + repl.len + (in.len - post_off);
  char *buf = cad_arena_alloc(a, total + 1);
  if (!buf) return CAD_E_NOMEM;
  size_t k = 0;
  memcpy(buf, in.p, pre);
  k = pre;
  memset(buf + k, sep, extra);
  k += extra;
  if (repl.len) memcpy(buf + k, repl.p, repl.len);
  k += repl.len;
  memcpy(buf + k, in.p + post_off, in.len - post_off);
  k += in.len - post_off;
  buf[k] = 0;
  out->p = buf;
  out->len = k;
  return 0;
}

/* New text of a field after setting the element (rep, comp, sub) to val. */
static int compose(cad_arena_t *a, const cad_hl7_delims_t *d, cad_str_t field, int rep, int comp,
                   int sub, cad_str_t val, cad_str_t *out) {
  if (rep == 0 && comp == 0) {
    *out = val;
    return 0;
  }
  if (rep <= 0) rep = 1;
  cad_str_t r = {field.p, 0}, c = {field.p, 0};
  cad_hl7_piece(field, d->rep, rep, &r);
  cad_str_t newrep = val;
  int rc;
  if (comp > 0) {
    cad_hl7_piece(r, d->comp, comp, &c);
    cad_str_t newcomp = val;
    if (sub > 0) {
      if ((rc = splice(a, c, d->sub, sub, val, &newcomp))) return rc;
    }
    if ((rc = splice(a, r, d->comp, comp, newcomp, &newrep))) return rc;
  }
  if (d->rep == 0 && rep == 1) {
    *out = newrep;
    return 0;
  }
  return splice(a, field, d->rep, rep, newrep, out);
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

static int set_in_seg(cad_hl7_msg_t *m, uint32_t si, const cad_hl7_path_t *p, cad_str_t val) {
  cad_hl7_seg_t *s = &m->segs[si];
  if (p->field == 0) return CAD_E_INVAL;
  if (s->header && p->field <= 2) return CAD_E_INVAL;
  uint32_t idx = s->header ? (uint32_t)p->field - 1 : (uint32_t)p->field;
  int rc = seg_own_fields(m, s, idx + 1);
  if (rc) return rc;
  while (s->nfields <= idx) {
    s->fields[s->nfields].p = s->raw.p + s->raw.len;
    s->fields[s->nfields].len = 0;
    s->nfields++;
  }
  cad_str_t field = s->fields[idx];
  int changed = 0;
  if (p->rep == CAD_HL7_ALL) {
    int nrep = cad_hl7_npieces(field, s->d.rep);
    for (int r = 1; r <= nrep; r++) {
      if ((rc = compose(m->arena, &s->d, field, r, p->comp, p->sub, val, &field))) return rc;
      changed++;
    }
  } else {
    if ((rc = compose(m->arena, &s->d, field, p->rep, p->comp, p->sub, val, &field))) return rc;
    changed = 1;
  }
  s->fields[idx] = field;
  s->dirty = true;
  m->dirty = true;
  return changed;
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
    if (!(flags & CAD_HL7_SET_RAW) && len) {
      char *buf = cad_arena_alloc(m->arena, len * 5 + 1);
      if (!buf) return CAD_E_NOMEM;
      enc.len = cad_hl7_escape(&m->segs[i].d, val, len, buf);
      enc.p = buf;
    }
    int rc = set_in_seg(m, i, p, enc);
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
    if (!(flags & CAD_HL7_SET_RAW) && len) {
      char *buf = cad_arena_alloc(m->arena, len * 5 + 1);
      if (!buf) return CAD_E_NOMEM;
      enc.len = cad_hl7_escape(delims_at(m, m->nsegs - 1), val, len, buf);
      enc.p = buf;
    }
    rc = set_in_seg(m, m->nsegs - 1, p, enc);
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
  if (m->nsegs == m->segs_cap) {
    uint32_t ncap = m->segs_cap * 2 + 8;
    cad_hl7_seg_t *ns = cad_arena_alloc(m->arena, (size_t)ncap * sizeof *ns);
    if (!ns) return CAD_E_NOMEM;
    if (m->nsegs) memcpy(ns, m->segs, (size_t)m->nsegs * sizeof *ns);
    m->segs = ns;
    m->segs_cap = ncap;
  }
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
