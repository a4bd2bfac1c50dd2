/* routes_overlay.c - a route's field edits kept beside the message as
 * received, and the output written once from both (routes_int.h, "overlay").
 *
 * A route whose steps only rewrite fields of segments the message has
 * (cad__route_plan() decides, routes_steps.c applies) does not need a copy
 * of the message's tree: each segment occurrence it touches gets the new text
 * of the fields it changed, and the output is the input's bytes with those
 * fields replaced.  Untouched stretches of the input (whole segments and the
 * parts of a segment around a changed field) are copied as one piece each,
 * where a tree edited in place is written field by field.
 *
 * A segment edited only by a recipe run that no other run of the route
 * touches (cad__step_t.defer) keeps no edits at all: the recipe is applied
 * here, while the segment is written, each field it writes going straight
 * into the output (routes_recipe.c).  Short pieces are copied with
 * fixed-size moves where enough bytes may be read (inside the input, or
 * padded: CAD__PAD), since their lengths change from one segment to the next
 * and branches on them are mispredicted.
 *
 * Same bytes as cad_hl7_serialize_span() of the tree edited with
 * cad_hl7_seg_set(): every segment followed by \r, a field beyond the last
 * one after empty fields, the rest as received; nothing changed: the input as
 * cad_routes_serialize() gives it.  The tests and the route fuzzer compare
 * the two (cad_routes_set_stepwise).
 */
#include <string.h>

#include "cad_error.h"
#include "routes_int.h"

int cad__overlay_init(cad__overlay_t *ov, const cad_hl7_msg_t *m, cad_arena_t *a) {
  ov->m = m;
  ov->extra = ov->hint = 0;
  ov->any = false;
  ov->segs = cad_arena_alloc(a, (size_t)(m->nsegs ? m->nsegs : 1) * sizeof *ov->segs);
  if (!ov->segs) return CAD_E_NOMEM;
  memset(ov->segs, 0, (size_t)m->nsegs * sizeof *ov->segs);
  return 0;
}

/* The entry for field `field` of segment `seg` (added when new, kept
 * sorted), or NULL when out of memory. */
static cad__fedit_t *edit_of(cad__overlay_t *ov, cad_arena_t *a, uint32_t seg, int field) {
  cad__segedits_t *se = &ov->segs[seg];
  uint32_t i = 0;
  while (i < se->n && se->f[i].field < field) i++;
  if (i < se->n && se->f[i].field == field) return &se->f[i];
  if (se->n == se->cap) {
    uint32_t cap = se->cap ? se->cap * 4 : 2;
    cad__fedit_t *nf = cad_arena_alloc(a, cap * sizeof *nf);
    if (!nf) return NULL;
    if (se->n) memcpy(nf, se->f, se->n * sizeof *nf);
    se->f = nf;
    se->cap = cap;
  }
  memmove(&se->f[i + 1], &se->f[i], (se->n - i) * sizeof *se->f);
  se->n++;
  se->f[i].field = field;
  return &se->f[i];
}

int cad__overlay_put(cad__overlay_t *ov, cad_arena_t *a, uint32_t seg, int field, cad_str_t text) {
  cad__fedit_t *f = edit_of(ov, a, seg, field);
  if (!f) return CAD_E_NOMEM;
  f->ncomp = 0;
  f->text = text;
  /* At most: the text, and one separator per field up to this one. */
  ov->extra += text.len + (size_t)field;
  ov->any = true;
  return 0;
}

int cad__overlay_put_comps(cad__overlay_t *ov, cad_arena_t *a, uint32_t seg, int field,
                           const cad_str_t *comp, uint32_t ncomp, uint32_t padded, char sep,
                           cad_str_t rest, size_t len) {
  cad__fedit_t *f = edit_of(ov, a, seg, field);
  if (!f) return CAD_E_NOMEM;
  f->ncomp = ncomp;
  f->comp = comp;
  f->padded = padded;
  f->len = len;
  f->sep = sep;
  f->rest = rest;
  ov->extra += len + (size_t)field;
  ov->any = true;
  return 0;
}

/* The output being written: bytes of the input that follow one another are
 * gathered (cp, clen) and copied in one piece.  The buffer grows when a
 * recipe applied now (cad__step_t.defer) writes more than its hint. */
typedef struct cad__wr {
  char *buf; /* with WR_SLACK bytes of room after the output */
  size_t o, cap;
  const char *cp;
  size_t clen;
  const char *in_end; /* the end of the input */
  cad_arena_t *a;
  bool nomem;
  uint32_t fields; /* fields written anew */
} wr_t;

#define WR_CHUNK 32
#define WR_SLACK WR_CHUNK /* >= CAD__PAD */

/* Room for n more bytes (and the slack): false when out of memory. */
static inline bool wr_room(wr_t *w, size_t n) {
  if (w->o + n + WR_SLACK <= w->cap) return true;
  if (w->nomem) return false;
  size_t cap = (w->o + n + WR_SLACK) * 2;
  char *b = cad_arena_alloc(w->a, cap);
  if (!b) {
    w->nomem = true;
    return false;
  }
  memcpy(b, w->buf, w->o);
  w->buf = b;
  w->cap = cap;
  return true;
}

/* The stretches of input between edits are short and of every length: copied
 * WR_CHUNK bytes at a time, the last move running past their end (into the
 * output's slack, from bytes of the input), which needs no branch on the
 * length as memcpy's size classes do; near the end of the input, memcpy. */
static inline void wr_flush(wr_t *w) {
  size_t n = w->clen;
  if (n && wr_room(w, n)) {
    if ((size_t)(w->in_end - w->cp) >= ((n + WR_CHUNK - 1) & ~(size_t)(WR_CHUNK - 1)))
      for (size_t k = 0; k < n; k += WR_CHUNK) memcpy(w->buf + w->o + k, w->cp + k, WR_CHUNK);
    else memcpy(w->buf + w->o, w->cp, n);
    w->o += n;
  }
  w->cp = NULL;
  w->clen = 0;
}

/* n bytes of the input at p. */
static inline void wr_input(wr_t *w, const char *p, size_t n) {
  if (w->cp && w->cp + w->clen == p) {
    w->clen += n;
    return;
  }
  wr_flush(w);
  w->cp = p;
  w->clen = n;
}

/* New bytes. */
static inline void wr_new(wr_t *w, const char *p, size_t n) {
  wr_flush(w);
  if (wr_room(w, n)) w->o += cad_copy_small(w->buf + w->o, p, n);
}

/* A field's new text at o: comp[0..n) joined by sep then rest (n == 0:
 * rest alone); returns its end. */
static inline char *put_comps(char *o, const cad_str_t *comp, uint32_t n, uint32_t padded, char sep,
                              cad_str_t rest, cad__inrange_t r) {
  if (n) {
    o = cad__put_piece(o, comp[0].p, comp[0].len, padded & 1, r);
    for (uint32_t k = 1; k < n; k++) {
      *o++ = sep;
      o = cad__put_piece(o, comp[k].p, comp[k].len, (padded >> k) & 1, r);
    }
    padded = 0;
  }
  return cad__put_piece(o, rest.p, rest.len, padded & 1, r);
}

char *cad__segw_begin(cad__segw_t *g, int field, size_t *room) {
  const cad_hl7_seg_t *s = g->s;
  const char *end = s->raw.p + s->raw.len;
  /* Spans are numbered as stored: a header's field n is span n - 1. */
  uint32_t idx = s->header ? (uint32_t)field - 1 : (uint32_t)field;
  if (idx < s->nfields) {
    cad_str_t sp = s->fields[idx];
    wr_input(g->w, g->pos, (size_t)(sp.p - g->pos));
    g->pos = sp.p + sp.len;
    wr_flush(g->w);
  } else {
    /* Beyond the segment's last field: empty fields up to it. */
    wr_input(g->w, g->pos, (size_t)(end - g->pos));
    g->pos = end;
    wr_flush(g->w);
    if (!wr_room(g->w, idx + 1 - (g->nf < idx + 1 ? g->nf : idx + 1))) return NULL;
    for (; g->nf <= idx; g->nf++) g->w->buf[g->w->o++] = s->d.field;
  }
  if (g->w->nomem) return NULL;
  size_t used = g->w->o + WR_SLACK;
  *room = g->w->cap > used ? g->w->cap - used : 0;
  return g->w->buf + g->w->o;
}

char *cad__segw_reserve(cad__segw_t *g, size_t n) {
  return wr_room(g->w, n) ? g->w->buf + g->w->o : NULL;
}

void cad__segw_end(cad__segw_t *g, char *o) {
  g->w->o = (size_t)(o - g->w->buf);
  g->w->fields++;
}

/* Segment s with its edits se (sorted by field). */
static void write_edited(wr_t *w, const cad_hl7_seg_t *s, const cad__segedits_t *se,
                         cad__inrange_t r) {
  cad__segw_t g = {w, s, s->raw.p, s->nfields, r};
  for (uint32_t k = 0; k < se->n; k++) {
    const cad__fedit_t *f = &se->f[k];
    size_t len = f->ncomp ? f->len : f->text.len;
    char *o = cad__segw_begin_n(&g, f->field, len);
    if (!o) return;
    if (f->ncomp) o = put_comps(o, f->comp, f->ncomp, f->padded, f->sep, f->rest, r);
    else o = put_comps(o, NULL, 0, 0, 0, f->text, r);
    cad__segw_end(&g, o);
  }
  wr_input(w, g.pos, (size_t)(s->raw.p + s->raw.len - g.pos));
}

int cad__overlay_serialize(const cad__overlay_t *ov, cad__ev_t *e, cad_str_t *out) {
  const cad_hl7_msg_t *m = ov->m;
  if (!ov->any) return cad_routes_serialize(m, e->a, out);
  /* Every segment and its terminator come from distinct bytes of the input
   * (the last may lack its terminator): input + 1, plus what edits add. */
  size_t hint = ov->hint < m->input.len ? ov->hint : m->input.len;
  size_t cap = m->input.len + 1 + ov->extra + hint + WR_SLACK;
  const char *in_end = m->input.p + m->input.len;
  wr_t w = {cad_arena_alloc(e->a, cap), 0, cap, NULL, 0, in_end, e->a, false, 0};
  if (!w.buf) return CAD_E_NOMEM;
  cad__inrange_t r = cad__inrange_of(m);
  for (uint32_t i = 0; i < m->nsegs; i++) {
    const cad_hl7_seg_t *s = &m->segs[i];
    const cad__segedits_t *se = &ov->segs[i];
    if (se->recipe) {
      cad__segw_t g = {&w, s, s->raw.p, s->nfields, r};
      if (cad__recipe_apply(e, se->recipe, i, &g)) return CAD__REDO;
      wr_input(&w, g.pos, (size_t)(s->raw.p + s->raw.len - g.pos));
    } else if (se->n) {
      write_edited(&w, s, se, r);
    } else {
      wr_input(&w, s->raw.p, s->raw.len);
    }
    const char *t = s->raw.p + s->raw.len;
    if (t < in_end && *t == '\r') wr_input(&w, t, 1);
    else wr_new(&w, "\r", 1);
  }
  wr_flush(&w);
  if (w.nomem) return CAD_E_NOMEM;
  /* Recipes applied now that changed nothing: the message as it came, as
   * an unchanged tree is written. */
  if (!w.fields) return cad_routes_serialize(m, e->a, out);
  out->p = w.buf;
  out->len = w.o;
  return 0;
}
