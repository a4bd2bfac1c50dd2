/* hl7.c - HL7 v2 ER7 parsing into segment and field spans, reading, writing.
 *
 * The tokenizer makes one pass over the input.  On x86-64 it looks at 16
 * bytes at a time (SSE2, part of the x86-64 baseline) for the three bytes
 * that matter at this level: the field separator, CR and LF; everything else
 * (components, repetitions, escapes) is found later, inside one field, when a
 * value is read.  No read goes past the end of the input: the vector loop
 * stops 16 bytes before the end and a scalar loop does the tail.
 */
#include "hl7.h"

#include "hl7_int.h"

#include <string.h>

#include "cad_error.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define CAD_HAVE_SSE2 1
#endif

const cad_hl7_delims_t cad_hl7_default_delims = {'|', '^', '~', '\\', '&', 0};

#define DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define DEFAULT_MAX_SEGMENTS 100000u
#define DEFAULT_MAX_FIELDS 1000u

static void diag_set(cad_hl7_diag_t *dg, int code, int hl7, uint32_t seg, const char *id,
                     size_t idlen, uint32_t field, size_t off, const char *reason) {
  if (!dg) return;
  dg->code = code;
  dg->hl7_code = hl7;
  dg->segment = seg;
  memset(dg->seg_id, 0, sizeof dg->seg_id);
  if (id) memcpy(dg->seg_id, id, idlen < 3 ? idlen : 3);
  dg->field = field;
  dg->offset = off;
  size_t n = strlen(reason);
  if (n >= sizeof dg->reason) n = sizeof dg->reason - 1;
  memcpy(dg->reason, reason, n);
  dg->reason[n] = 0;
}

static inline bool is_header_id(const char *p) { return cad_hl7_is_header_id(cad_hl7_segid(p)); }

static inline bool is_id_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

/* Read the delimiters of a header segment starting at p (n bytes available).
 * Returns 0 or CAD_E_DELIM. */
static int read_delims(const char *p, size_t n, cad_hl7_delims_t *d, const char **why) {
  if (n < 4) {
    *why = "header segment too short for the field separator";
    return CAD_E_DELIM;
  }
  char fs = p[3];
  if (fs == '\r' || fs == '\n' || is_id_char((unsigned char)fs) || fs == ' ' || fs == 0) {
    *why = "invalid field separator (MSH-1)";
    return CAD_E_DELIM;
  }
  memset(d, 0, sizeof *d);
  d->field = fs;
  char enc[5] = {0, 0, 0, 0, 0};
  size_t k = 0;
  for (size_t i = 4; i < n && k < 5; i++) {
    char c = p[i];
    if (c == fs || c == '\r' || c == '\n') break;
    enc[k++] = c;
  }
  if (k == 0) {
    *why = "no encoding characters (MSH-2)";
    return CAD_E_DELIM;
  }
  /* A repeated character (or one equal to the field separator) keeps only
   * its first role: the later role is left undefined (0). */
  char *roles[5] = {&d->comp, &d->rep, &d->esc, &d->sub, &d->trunc};
  for (size_t i = 0; i < k; i++) {
    char c = enc[i];
    bool dup = c == fs || c == ' ' || is_id_char((unsigned char)c);
    for (size_t j = 0; j < i; j++)
      if (enc[j] == c) dup = true;
    *roles[i] = dup ? 0 : c;
  }
  if (d->comp == 0) {
    *why = "invalid component separator in MSH-2";
    return CAD_E_DELIM;
  }
  return 0;
}

/* ---- the tokenizer ------------------------------------------------------ */

typedef struct {
  cad_hl7_msg_t *m;
  const char *p;
  size_t len;
  cad_str_t *fields;
  uint32_t nfields, fields_cap;
  uint32_t seg_first; /* index of the current segment's first field */
  size_t seg_start;   /* offset of the current segment */
  size_t field_start; /* offset of the current field */
  cad_hl7_delims_t d; /* delimiters in force */
  const cad_hl7_limits_t *lim;
  cad_hl7_diag_t *diag;
} tok_t;

static int grow_fields(tok_t *t) {
  uint32_t ncap = t->fields_cap * 2 + 64;
  cad_str_t *nf = cad_arena_alloc(t->m->arena, (size_t)ncap * sizeof *nf);
  if (!nf) return CAD_E_NOMEM;
  memcpy(nf, t->fields, (size_t)t->nfields * sizeof *nf);
  t->fields = nf;
  t->fields_cap = ncap;
  return 0;
}

int cad__hl7_grow_segs(cad_hl7_msg_t *m, uint32_t extra) {
  uint32_t ncap = m->segs_cap * 2 + (extra > 16 ? extra : 16);
  cad_hl7_seg_t *ns = cad_arena_alloc(m->arena, (size_t)ncap * sizeof *ns);
  if (!ns) return CAD_E_NOMEM;
  if (m->nsegs) memcpy(ns, m->segs, (size_t)m->nsegs * sizeof *ns);
  m->segs = ns;
  m->segs_cap = ncap;
  return 0;
}

static inline int push_field(tok_t *t, size_t end) {
  if (t->nfields == t->fields_cap) {
    int rc = grow_fields(t);
    if (rc) return rc;
  }
  t->fields[t->nfields].p = t->p + t->field_start;
  t->fields[t->nfields].len = end - t->field_start;
  t->nfields++;
  return 0;
}

/* Close the segment that ends at `end` (exclusive). */
static int end_segment(tok_t *t, size_t end) {
  cad_hl7_msg_t *m = t->m;
  if (end == t->seg_start) return 0; /* empty line */
  int rc = push_field(t, end);
  if (rc) return rc;
  uint32_t nf = t->nfields - t->seg_first;
  cad_str_t id = t->fields[t->seg_first];
  uint32_t segno = m->nsegs + 1;
  /* Segment ids are 3 letters or digits.  Shorter ids (a truncated "I" for
   * "PID" is seen in the wild) are accepted so the message can still be
   * read and passed on unchanged; such a segment cannot be addressed by a
   * path.  Anything longer or with other characters is an error. */
  bool id_ok = id.len >= 1 && id.len <= 3;
  for (size_t k = 0; id_ok && k < id.len; k++) id_ok = is_id_char((unsigned char)id.p[k]);
  if (!id_ok) {
    /* The ERR segment locates it (ERR-2: id ^ sequence): the id as sent
     * when it is at most 3 printable characters, else the sequence alone. */
    bool printable = id.len <= 3;
    for (size_t k = 0; printable && k < id.len; k++) printable = id.p[k] > ' ' && id.p[k] < 0x7f;
    diag_set(t->diag, CAD_E_SEGMENT, 100, segno, printable ? id.p : NULL, id.len, 0, t->seg_start,
             "segment id is not 3 letters or digits");
    return CAD_E_SEGMENT;
  }
  if (nf > t->lim->max_fields + 1) {
    diag_set(t->diag, CAD_E_TOOBIG, 207, segno, id.p, id.len, 0, t->seg_start,
             "too many fields in segment");
    return CAD_E_TOOBIG;
  }
  if (id.len == 3 && is_header_id(id.p) && end - t->seg_start < 4 && m->nsegs > 0) {
    /* A header segment carries the delimiters of what follows: a bare
     * "MSH" (no field separator) is refused, as it is as a first segment. */
    diag_set(t->diag, CAD_E_DELIM, 102, segno, id.p, id.len, 1, t->seg_start,
             "header segment without a field separator (MSH-1)");
    return CAD_E_DELIM;
  }
  if (m->nsegs >= t->lim->max_segments) {
    diag_set(t->diag, CAD_E_TOOBIG, 207, segno, id.p, id.len, 0, t->seg_start, "too many segments");
    return CAD_E_TOOBIG;
  }
  if (m->nsegs == m->segs_cap) {
    rc = cad__hl7_grow_segs(m, 16);
    if (rc) return rc;
  }
  cad_hl7_seg_t *s = &m->segs[m->nsegs++];
  s->raw.p = t->p + t->seg_start;
  s->raw.len = end - t->seg_start;
  /* Until the field array stops moving, keep the index in the pointer. */
  s->fields = (cad_str_t *)(uintptr_t)t->seg_first;
  s->nfields = nf;
  s->fields_cap = 0;
  char a = id.p[0], b = id.len > 1 ? id.p[1] : 0, c = id.len > 2 ? id.p[2] : 0;
  if (a >= 'a' && a <= 'z') a = (char)(a - 32);
  if (b >= 'a' && b <= 'z') b = (char)(b - 32);
  if (c >= 'a' && c <= 'z') c = (char)(c - 32);
  s->name[0] = a;
  s->name[1] = b;
  s->name[2] = c;
  s->name[3] = 0;
  s->id = cad_hl7_segid(s->name);
  s->d = t->d;
  s->offset = (uint32_t)t->seg_start;
  s->header = id.len == 3 && is_header_id(id.p);
  s->dirty = false;
  return 0;
}

/* A segment starts at offset `at`.  Returns 1 when the field separator
 * changed (a batch whose messages use different delimiters), so the scan
 * must restart there; 0 otherwise; negative on error. */
static int start_segment(tok_t *t, size_t at) {
  t->seg_start = at;
  t->field_start = at;
  t->seg_first = t->nfields;
  if (at + 4 <= t->len && is_header_id(t->p + at) && at != 0) {
    cad_hl7_delims_t nd;
    const char *why = NULL;
    int rc = read_delims(t->p + at, t->len - at, &nd, &why);
    if (rc) {
      diag_set(t->diag, rc, 102, t->m->nsegs + 1, t->p + at, 3, 2, at, why);
      return rc;
    }
    bool changed = nd.field != t->d.field;
    t->d = nd;
    return changed ? 1 : 0;
  }
  return 0;
}

int cad_hl7_parse(cad_hl7_msg_t *m, const char *p, size_t len, cad_arena_t *arena,
                  const cad_hl7_limits_t *limits, cad_hl7_diag_t *diag) {
  cad_hl7_limits_t lim = {DEFAULT_MAX_BYTES, DEFAULT_MAX_SEGMENTS, DEFAULT_MAX_FIELDS};
  if (limits) {
    if (limits->max_bytes) lim.max_bytes = limits->max_bytes;
    if (limits->max_segments) lim.max_segments = limits->max_segments;
    if (limits->max_fields) lim.max_fields = limits->max_fields;
  }
  memset(m, 0, sizeof *m);
  m->arena = arena;
  m->input.p = p;
  m->input.len = len;
  if (diag) memset(diag, 0, sizeof *diag);
  if (len > lim.max_bytes || len > UINT32_MAX) {
    diag_set(diag, CAD_E_TOOBIG, 207, 0, NULL, 0, 0, 0, "message larger than the limit");
    return CAD_E_TOOBIG;
  }
  /* Leading segment terminators (blank lines) are skipped. */
  size_t start = 0;
  while (start < len && (p[start] == '\r' || p[start] == '\n')) start++;
  if (start == len) {
    diag_set(diag, CAD_E_EMPTY, 100, 0, NULL, 0, 0, 0, "empty message");
    return CAD_E_EMPTY;
  }
  if (len - start < 3 || !is_header_id(p + start)) {
    size_t idl = 0;
    while (idl < 3 && start + idl < len && is_id_char((unsigned char)p[start + idl])) idl++;
    diag_set(diag, CAD_E_NOMSH, 100, 1, idl == 3 ? p + start : NULL, idl, 0, start,
             "first segment is not MSH, BHS or FHS");
    return CAD_E_NOMSH;
  }
  tok_t t;
  memset(&t, 0, sizeof t);
  t.m = m;
  t.p = p;
  t.len = len;
  t.lim = &lim;
  t.diag = diag;
  const char *why = NULL;
  int rc = read_delims(p + start, len - start, &t.d, &why);
  if (rc) {
    diag_set(diag, rc, 102, 1, p + start, 3, 2, start, why);
    return rc;
  }
  m->d = t.d;
  /* Initial capacity guesses; both arrays grow by doubling in the arena. */
  t.fields_cap = (uint32_t)(len / 6 + 32);
  t.fields = cad_arena_alloc(arena, (size_t)t.fields_cap * sizeof *t.fields);
  m->segs_cap = (uint32_t)(len / 48 + 8);
  m->segs = cad_arena_alloc(arena, (size_t)m->segs_cap * sizeof *m->segs);
  if (!t.fields || !m->segs) {
    diag_set(diag, CAD_E_NOMEM, 207, 0, NULL, 0, 0, 0, "out of memory");
    return CAD_E_NOMEM;
  }
  t.seg_start = t.field_start = start;
  t.seg_first = 0;

  size_t i = start;
  for (;;) {
    char fs = t.d.field;
    bool restart = false;
#ifdef CAD_HAVE_SSE2
    const __m128i vf = _mm_set1_epi8(fs);
    const __m128i vr = _mm_set1_epi8('\r');
    const __m128i vn = _mm_set1_epi8('\n');
    while (i + 16 <= len && !restart) {
      __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
      __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, vf), _mm_cmpeq_epi8(x, vr)),
                                 _mm_cmpeq_epi8(x, vn));
      unsigned mask = (unsigned)_mm_movemask_epi8(hit);
      while (mask) {
        size_t pos = i + (size_t)__builtin_ctz(mask);
        mask &= mask - 1;
        if (p[pos] == fs) {
          if ((rc = push_field(&t, pos))) goto fail;
          t.field_start = pos + 1;
        } else {
          if ((rc = end_segment(&t, pos))) goto fail;
          rc = start_segment(&t, pos + 1);
          if (rc < 0) goto fail;
          if (rc == 1) {
            i = pos + 1;
            restart = true;
            break;
          }
        }
      }
      if (!restart) i += 16;
    }
#endif
    if (restart) continue;
    for (; i < len; i++) {
      char c = p[i];
      if (c == fs) {
        if ((rc = push_field(&t, i))) goto fail;
        t.field_start = i + 1;
      } else if (c == '\r' || c == '\n') {
        if ((rc = end_segment(&t, i))) goto fail;
        rc = start_segment(&t, i + 1);
        if (rc < 0) goto fail;
        if (rc == 1) {
          i++;
          restart = true;
          break;
        }
      }
    }
    if (!restart) break;
  }
  if ((rc = end_segment(&t, len))) goto fail;
  m->final_terminator = p[len - 1] == '\r' || p[len - 1] == '\n';
  for (uint32_t k = 0; k < m->nsegs; k++)
    m->segs[k].fields = t.fields + (uintptr_t)m->segs[k].fields;
  return 0;
fail:
  if (rc == CAD_E_NOMEM)
    diag_set(diag, CAD_E_NOMEM, 207, m->nsegs + 1, NULL, 0, 0, i, "out of memory");
  m->nsegs = 0;
  return rc;
}

/* ---- reading ------------------------------------------------------------ */

int cad_hl7_find_seg(const cad_hl7_msg_t *m, uint32_t segid, int occ, uint32_t from) {
  int seen = 0;
  for (uint32_t i = from; i < m->nsegs; i++) {
    if (m->segs[i].id == segid && ++seen == occ) return (int)i;
  }
  return -1;
}

/* byte_values[c] == c: a stable place for a one-byte value. */
static const char byte_values[256] = {
#define B4(n) (char)(n), (char)((n) + 1), (char)((n) + 2), (char)((n) + 3)
#define B16(n) B4(n), B4((n) + 4), B4((n) + 8), B4((n) + 12)
#define B64(n) B16(n), B16((n) + 16), B16((n) + 32), B16((n) + 48)
    B64(0), B64(64), B64(128), B64(192)
#undef B64
#undef B16
#undef B4
};

bool cad__hl7_field_sep(const cad_hl7_seg_t *s, cad_str_t *out) {
  /* MSH-1 is the separator itself, right after the id (or, for a header
   * too short to hold it, a byte with its value that does not move with
   * the segment array). */
  out->p = s->raw.len >= 4 ? s->raw.p + 3 : &byte_values[(unsigned char)s->d.field];
  out->len = 1;
  return true;
}

int cad_hl7_nfields(const cad_hl7_seg_t *s) {
  if (s->header) return (int)s->nfields; /* MSH-1 counts, the id does not */
  return (int)s->nfields - 1;
}

bool cad_hl7_piece(cad_str_t in, char sep, int n, cad_str_t *out) {
  out->p = in.p;
  out->len = 0;
  if (n < 1) return false;
  if (sep == 0) {
    if (n == 1) {
      *out = in;
      return true;
    }
    return false;
  }
  const char *p = in.p, *end = in.p + in.len;
  for (int k = 1; k < n; k++) {
    const char *q = p ? memchr(p, sep, (size_t)(end - p)) : NULL;
    if (!q) {
      out->p = end;
      return false;
    }
    p = q + 1;
  }
  const char *q = memchr(p, sep, (size_t)(end - p));
  out->p = p;
  out->len = (size_t)((q ? q : end) - p);
  return true;
}

int cad_hl7_npieces(cad_str_t in, char sep) {
  if (sep == 0) return 1;
  int n = 1;
  const char *p = in.p, *end = in.p + in.len;
  while (p < end) {
    const char *q = memchr(p, sep, (size_t)(end - p));
    if (!q) break;
    n++;
    p = q + 1;
  }
  return n;
}

/* Path p inside one field (not MSH-1/MSH-2). */
static inline bool resolve_field(cad_str_t f, const cad_hl7_delims_t *d, const cad_hl7_path_t *p,
                                 int rep, cad_str_t *out) {
  out->p = NULL;
  out->len = 0;
  if (rep == 0 && p->comp == 0) {
    *out = f;
    return true;
  }
  if (rep <= 0) rep = 1;
  cad_str_t r, c;
  if (!cad_hl7_piece(f, d->rep, rep, &r)) return false;
  if (p->comp == 0) {
    *out = r;
    return true;
  }
  if (!cad_hl7_piece(r, d->comp, p->comp, &c)) return false;
  if (p->sub == 0) {
    *out = c;
    return true;
  }
  return cad_hl7_piece(c, d->sub, p->sub, out);
}

bool cad_hl7_resolve_in_seg(const cad_hl7_seg_t *s, const cad_hl7_path_t *p, int rep,
                            cad_str_t *out) {
  out->p = NULL;
  out->len = 0;
  if (p->field == 0) {
    *out = s->raw;
    return true;
  }
  cad_str_t f;
  if (!cad_hl7_field(s, p->field, &f)) return false;
  if (s->header && p->field <= 2) {
    /* MSH-1 and MSH-2 are never split. */
    if ((rep > 1) || p->comp > 1 || p->sub > 1) return false;
    *out = f;
    return true;
  }
  return resolve_field(f, &s->d, p, rep, out);
}

bool cad_hl7_resolve_in_field(cad_str_t f, const cad_hl7_delims_t *d, const cad_hl7_path_t *p,
                              int rep, cad_str_t *out) {
  return resolve_field(f, d, p, rep, out);
}

void cad_hl7_iter_init(cad_hl7_iter_t *it, const cad_hl7_msg_t *m, const cad_hl7_path_t *p) {
  memset(it, 0, sizeof *it);
  it->m = m;
  it->p = *p;
  it->cur_seg = -1;
}

static void fill_match(cad_hl7_match_t *out, const cad_hl7_msg_t *m, uint32_t si, int occ, int rep,
                       bool present, cad_str_t raw) {
  out->raw = raw;
  out->present = present;
  out->seg_index = si;
  out->occ = occ;
  out->rep = rep;
  out->d = &m->segs[si].d;
}

bool cad_hl7_iter_next(cad_hl7_iter_t *it, cad_hl7_match_t *out) {
  const cad_hl7_msg_t *m = it->m;
  const cad_hl7_path_t *p = &it->p;
  for (;;) {
    if (it->done) return false;
    if (it->cur_seg >= 0) {
      /* Expanding the repetitions of one segment's field. */
      const cad_hl7_seg_t *s = &m->segs[it->cur_seg];
      cad_str_t f;
      bool have = cad_hl7_field(s, p->field, &f);
      int nrep = !have ? 1 : (s->header && p->field <= 2) ? 1 : cad_hl7_npieces(f, s->d.rep);
      if (it->next_rep <= nrep) {
        int r = it->next_rep++;
        cad_str_t v;
        bool present = have && cad_hl7_resolve_in_seg(s, p, r, &v);
        if (!present) v.p = NULL, v.len = 0;
        fill_match(out, m, (uint32_t)it->cur_seg, it->occ, r, present, v);
        return true;
      }
      it->cur_seg = -1;
      if (p->occ != CAD_HL7_ALL) {
        it->done = true;
        return false;
      }
      continue;
    }
    /* Find the next segment occurrence. */
    uint32_t i = it->next_seg;
    while (i < m->nsegs && m->segs[i].id != p->segid) i++;
    if (i >= m->nsegs) {
      it->done = true;
      return false;
    }
    it->next_seg = i + 1;
    it->occ++;
    if (p->occ != CAD_HL7_ALL && it->occ != p->occ) continue;
    if (p->rep == CAD_HL7_ALL && p->field > 0) {
      it->cur_seg = (int)i;
      it->next_rep = 1;
      continue;
    }
    cad_str_t v;
    bool present = cad_hl7_resolve_in_seg(&m->segs[i], p, p->rep, &v);
    if (!present) v.p = NULL, v.len = 0;
    fill_match(out, m, i, it->occ, p->rep, present, v);
    if (p->occ != CAD_HL7_ALL) it->done = true;
    return true;
  }
}

bool cad_hl7_get(const cad_hl7_msg_t *m, const cad_hl7_path_t *p, cad_hl7_match_t *out) {
  if (p->occ != CAD_HL7_ALL && p->rep != CAD_HL7_ALL) {
    /* One match at most: what the iterator gives, without it. */
    int i = cad_hl7_find_seg(m, p->segid, p->occ, 0);
    if (i < 0) {
      memset(out, 0, sizeof *out);
      return false;
    }
    cad_str_t v;
    bool present = cad_hl7_resolve_in_seg(&m->segs[i], p, p->rep, &v);
    if (!present) v.p = NULL, v.len = 0;
    fill_match(out, m, (uint32_t)i, p->occ, p->rep, present, v);
    return present;
  }
  cad_hl7_iter_t it;
  cad_hl7_iter_init(&it, m, p);
  if (!cad_hl7_iter_next(&it, out)) {
    memset(out, 0, sizeof *out);
    return false;
  }
  return out->present;
}

cad_hl7_kind_t cad_hl7_kind(const cad_hl7_match_t *mt) {
  if (!mt->present) return CAD_HL7_ABSENT;
  if (mt->raw.len == 0) return CAD_HL7_EMPTY;
  if (mt->raw.len == 2 && mt->raw.p[0] == '"' && mt->raw.p[1] == '"') return CAD_HL7_NULL;
  return CAD_HL7_VALUE;
}

bool cad_hl7_is_leaf(const cad_hl7_path_t *p, const cad_hl7_match_t *mt) {
  if (!mt->present || mt->raw.len == 0) return true;
  const cad_hl7_delims_t *d = mt->d;
  if (p->field == 0) return false;
  if (p->field <= 2 && cad_hl7_is_header_id(p->segid)) return true;
  char deeper[3] = {0, 0, 0};
  if (p->sub > 0) return true;
  if (p->comp > 0) {
    deeper[0] = d->sub;
  } else if (mt->rep != 0) {
    deeper[0] = d->comp;
    deeper[1] = d->sub;
  } else {
    deeper[0] = d->rep;
    deeper[1] = d->comp;
    deeper[2] = d->sub;
  }
  for (int k = 0; k < 3; k++)
    if (deeper[k] && memchr(mt->raw.p, deeper[k], mt->raw.len)) return false;
  return true;
}

bool cad_hl7_value(const cad_hl7_path_t *p, const cad_hl7_match_t *mt, cad_arena_t *a,
                   cad_str_t *out) {
  if (!mt->present) {
    out->p = "";
    out->len = 0;
    return true;
  }
  /* ASCII without the escape character: nothing to decode and already UTF-8,
   * whatever the element is (the usual case, so looked at first). */
  bool plain = true;
  for (size_t i = 0; i < mt->raw.len && plain; i++) {
    char c = mt->raw.p[i];
    plain = (unsigned char)c < 0x80 && !(c == mt->d->esc && c);
  }
  if (plain) {
    *out = mt->raw;
    return true;
  }
  if (!cad_hl7_is_leaf(p, mt)) return cad_hl7_text(mt->raw, a, out);
  if (p->field <= 2 && p->field > 0 && cad_hl7_is_header_id(p->segid))
    return cad_hl7_text(mt->raw, a, out); /* MSH-1 and MSH-2 are not decoded */
  cad_str_t dec;
  if (!cad_hl7_decode(mt->d, mt->raw, a, &dec)) return false;
  return cad_hl7_text(dec, a, out);
}

/* ---- writing ------------------------------------------------------------ */

static int append_normalised(cad_buf_t *out, const char *p, size_t n) {
  /* Copy, turning \r\n and lone \n into \r. */
  int rc = cad_buf_reserve(out, n);
  if (rc) return rc;
  const char *end = p + n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return cad_buf_append(out, p, (size_t)(end - p));
    if (nl > p && nl[-1] == '\r') {
      if ((rc = cad_buf_append(out, p, (size_t)(nl - p)))) return rc;
    } else {
      if ((rc = cad_buf_append(out, p, (size_t)(nl - p)))) return rc;
      if ((rc = cad_buf_putc(out, '\r'))) return rc;
    }
    p = nl + 1;
  }
  return 0;
}

size_t cad_hl7_seg_size(const cad_hl7_seg_t *s) {
  if (!s->dirty) return s->raw.len;
  size_t n = s->nfields ? s->nfields - 1 : 0;
  for (uint32_t k = 0; k < s->nfields; k++) n += s->fields[k].len;
  return n;
}

static bool in_raw(const cad_hl7_seg_t *s, cad_str_t f) {
  uintptr_t p = (uintptr_t)f.p, r = (uintptr_t)s->raw.p;
  return p >= r && p + f.len <= r + s->raw.len;
}

size_t cad_hl7_seg_write(const cad_hl7_seg_t *s, char *out) {
  if (!s->dirty) {
    if (s->raw.len) memcpy(out, s->raw.p, s->raw.len);
    return s->raw.len;
  }
  size_t o = 0;
  for (uint32_t k = 0; k < s->nfields;) {
    /* Fields still side by side in the segment as received, with a field
     * separator between each, are copied as one piece: the same bytes. */
    const char *start = s->fields[k].p;
    size_t len = s->fields[k].len;
    uint32_t j = k + 1;
    if (in_raw(s, s->fields[k]))
      while (j < s->nfields && s->fields[j].p == start + len + 1 && in_raw(s, s->fields[j]) &&
             start[len] == s->d.field) {
        len += 1 + s->fields[j].len;
        j++;
      }
    if (k) out[o++] = s->d.field;
    o += cad_copy_small(out + o, start, len);
    k = j;
  }
  return o;
}

static int write_segment(const cad_hl7_seg_t *s, cad_buf_t *out) {
  size_t n = cad_hl7_seg_size(s);
  int rc = cad_buf_reserve(out, n);
  if (rc) return rc;
  out->len += cad_hl7_seg_write(s, out->data + out->len);
  return 0;
}

int cad_hl7_serialize(const cad_hl7_msg_t *m, cad_buf_t *out) {
  if (!m->dirty) return append_normalised(out, m->input.p, m->input.len);
  int rc = 0;
  for (uint32_t i = 0; i < m->nsegs && !rc; i++) {
    rc = write_segment(&m->segs[i], out);
    if (!rc) rc = cad_buf_putc(out, '\r');
  }
  return rc;
}

int cad_hl7_serialize_span(const cad_hl7_msg_t *m, cad_arena_t *a, cad_str_t *out) {
  if (!m->dirty && !memchr(m->input.p, '\n', m->input.len)) {
    *out = m->input; /* already as cad_hl7_serialize would write it */
    return 0;
  }
  size_t total = 0;
  if (!m->dirty) total = m->input.len;
  else
    for (uint32_t i = 0; i < m->nsegs; i++) total += cad_hl7_seg_size(&m->segs[i]) + 1;
  char *buf = cad_arena_alloc(a, total + 1);
  if (!buf) return CAD_E_NOMEM;
  size_t o = 0;
  if (!m->dirty) {
    const char *p = m->input.p;
    for (size_t i = 0; i < m->input.len; i++) {
      if (p[i] == '\n') {
        if (!(i > 0 && p[i - 1] == '\r')) buf[o++] = '\r';
      } else {
        buf[o++] = p[i];
      }
    }
  } else {
    for (uint32_t i = 0; i < m->nsegs; i++) {
      o += cad_hl7_seg_write(&m->segs[i], buf + o);
      buf[o++] = '\r';
    }
  }
  out->p = buf;
  out->len = o;
  return 0;
}

const char *cad_hl7_err_text(int code) {
  switch (code) {
    case 0: return "Message accepted";
    case 100: return "Segment sequence error";
    case 101: return "Required field missing";
    case 102: return "Data type error";
    case 103: return "Table value not found";
    case 104: return "Value too long";
    case 200: return "Unsupported message type";
    case 201: return "Unsupported event code";
    case 202: return "Unsupported processing id";
    case 203: return "Unsupported version id";
    case 204: return "Unknown key identifier";
    case 205: return "Duplicate key identifier";
    case 206: return "Application record locked";
    case 207: return "Application internal error";
    default: return "Unknown error";
  }
}
