/* routes_int.h - the compiled form of routes, shared by the files of routes/ only. */
#ifndef CAD_ROUTES_INT_H
#define CAD_ROUTES_INT_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "routes.h"

#define CAD__ROUTES_MAX_DEPTH 16    /* nesting of all/any/not */
#define CAD__ROUTES_MAX_ERRORS 100  /* error lines per compile */
#define CAD__ROUTES_MAX_VALUE 65536 /* a transformed value, bytes */

/* ---- error lines ---- */
typedef struct cad__errs {
  cad_buf_t *buf; /* may be NULL */
  int n;          /* problems found (also beyond the lines written) */
} cad__errs_t;

void cad__err_at(cad__errs_t *e, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void cad__err_node(cad__errs_t *e, const cad_yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- tables ---- */

/* Bytes that may be read from the start of a short text known to be padded
 * (table keys and values, a recipe's constants): at least CAD__PAD from its
 * start are readable, so up to CAD__PAD bytes of it are copied with one
 * fixed-size move (routes_overlay.c). */
#define CAD__PAD 16

typedef struct cad__table {
  char *name;
  char **keys, **vals; /* each NUL-terminated and followed by CAD__PAD zero bytes */
  size_t *klen, *vlen;
  uint32_t *slots; /* open addressing: index+1, 0 = empty */
  size_t nslots, n;
  bool vals_std_plain; /* no value holds a standard delimiter (| ^ ~ \ & #)
                          or a line break: with standard delimiters, values
                          are written as they are (cad__std_plain) */
} cad__table_t;

/* Text that cad_hl7_encode() leaves as it is in a message with the standard
 * delimiters (| ^ ~ \ & and # when it declares a truncation character). */
static inline bool cad__std_plain(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) switch (p[i]) {
      case '|':
      case '^':
      case '~':
      case '\\':
      case '&':
      case '#':
      case '\r':
      case '\n': return false;
    }
  return true;
}

/* cad_hl7_kind() inline (conditions and transforms ask it for every match). */
static inline cad_hl7_kind_t cad__kind(const cad_hl7_match_t *mt) {
  if (!mt->present) return CAD_HL7_ABSENT;
  if (mt->raw.len == 0) return CAD_HL7_EMPTY;
  if (mt->raw.len == 2 && mt->raw.p[0] == '"' && mt->raw.p[1] == '"') return CAD_HL7_NULL;
  return CAD_HL7_VALUE;
}

/* The standard delimiters (the case cad__std_plain is for). */
static inline bool cad__std_delims(const cad_hl7_delims_t *d) {
  return d->field == '|' && d->comp == '^' && d->rep == '~' && d->esc == '\\' && d->sub == '&' &&
         (d->trunc == 0 || d->trunc == '#');
}

struct cad_tables {
  int refs;
  cad_arena_t arena;
  cad__table_t *t;
  size_t n;
};

const cad__table_t *cad__tables_find(const cad_tables_t *t, const char *name, size_t len);
/* A key of at most 16 bytes as two words, zero past its end (the form a
 * key is hashed and compared in: no loop over its bytes, whose number
 * changes from one lookup to the next, so a loop's exit is mispredicted). */
typedef struct cad__kw {
  uint64_t w[2];
} cad__kw_t;
extern const unsigned char cad__key_mask[32]; /* 16 x 0xff, 16 x 0 (tables.c) */

/* The key of n <= 16 bytes at p, where 16 bytes may be read (padded, or
 * inside the input). */
static inline cad__kw_t cad__key_words(const char *p, size_t n) {
  uint64_t w[2], m[2];
  memcpy(w, p, 16);
  memcpy(m, cad__key_mask + 16 - n, 16);
  return (cad__kw_t){{w[0] & m[0], w[1] & m[1]}};
}

/* The key of n <= 16 bytes at p, wherever it is (copied first). */
static inline cad__kw_t cad__key_words_copy(const char *p, size_t n) {
  char b[32] = {0};
  cad_copy_small(b, p, n);
  return cad__key_words(b, n);
}

static inline uint64_t cad__hash_words(cad__kw_t k, size_t n) {
  uint64_t h = (k.w[0] + n) * 0x9e3779b97f4a7c15ull ^ k.w[1] * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  return h ^ (h >> 32);
}

/* Where a key goes in a table's slots: keys of up to 16 bytes from their
 * words, longer ones byte by byte (FNV-1a). */
static inline uint64_t cad__table_hash(const char *p, size_t n) {
  if (n <= 16) return cad__hash_words(cad__key_words_copy(p, n), n);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* Look up a key of n <= 16 bytes given as its words. */
static inline bool cad__table_get_kw(const cad__table_t *t, cad__kw_t kw, size_t n,
                                     cad_str_t *value) {
  if (!t || !t->nslots) return false;
  size_t mask = t->nslots - 1;
  for (size_t i = (size_t)cad__hash_words(kw, n) & mask;; i = (i + 1) & mask) {
    uint32_t s = t->slots[i];
    if (!s) return false;
    size_t k = s - 1;
    uint64_t sw[2]; /* a stored key is followed by CAD__PAD zero bytes */
    memcpy(sw, t->keys[k], 16);
    if (t->klen[k] == n && sw[0] == kw.w[0] && sw[1] == kw.w[1]) {
      if (value) {
        value->p = t->vals[k];
        value->len = t->vlen[k];
      }
      return true;
    }
  }
}

/* Look a key up (inline: a transform may do it for every segment). */
static inline bool cad__table_get(const cad__table_t *t, const char *key, size_t klen,
                                  cad_str_t *value) {
  if (!t || !t->nslots) return false;
  if (klen <= 16) return cad__table_get_kw(t, cad__key_words_copy(key, klen), klen, value);
  size_t mask = t->nslots - 1;
  for (size_t i = (size_t)cad__table_hash(key, klen) & mask;; i = (i + 1) & mask) {
    uint32_t s = t->slots[i];
    if (!s) return false;
    size_t k = s - 1;
    if (t->klen[k] == klen && memcmp(t->keys[k], key, klen) == 0) {
      if (value) {
        value->p = t->vals[k];
        value->len = t->vlen[k];
      }
      return true;
    }
  }
}
void cad__tables_ref(const cad_tables_t *t);

/* ---- paths ---- */
typedef struct cad__rpath {
  cad_hl7_path_t p;
  bool relative; /* no [occ] written: inside a per-segment context it means
                    the current segment */
  char text[40]; /* as written, for messages */
} cad__rpath_t;

/* ---- conditions ---- */
typedef enum {
  OP_EQUALS = 1,
  OP_NOT_EQUALS,
  OP_IN,
  OP_IN_TABLE,
  OP_MATCHES,
  OP_EXISTS,
  OP_EMPTY,
  OP_PREFIX,
  OP_LT,
  OP_LE,
  OP_GT,
  OP_GE,
  OP_BEFORE,
  OP_AFTER,
} cad__op_kind_t;

typedef struct cad__op {
  cad__op_kind_t kind;
  bool flag;       /* exists / empty */
  cad_str_t s;     /* equals, not_equals, prefix */
  cad_str_t *list; /* in */
  size_t nlist;
  const cad__table_t *table;
  regex_t *re;
  double num;
  cad_hl7_dtm_t dtm;
} cad__op_t;

typedef enum { C_LEAF = 1, C_ALL, C_ANY, C_NOT } cad__cond_kind_t;

typedef struct cad__cond {
  cad__cond_kind_t kind;
  cad__rpath_t path; /* C_LEAF */
  bool quant_all;    /* C_LEAF: every match must hold */
  cad__op_t *ops;
  size_t nops;
  struct cad__cond **kids; /* C_ALL / C_ANY / C_NOT (1) */
  size_t nkids;
} cad__cond_t;

/* ---- templates ---- */
typedef struct cad__tpart {
  bool is_path;
  cad_str_t text; /* literal ER7 in standard delimiters */
  cad__rpath_t path;
  int slot; /* in a fused run, a field of the segment being written: its
               workspace slot (routes_steps.c); else -1 */
} cad__tpart_t;

typedef struct cad__tpl {
  cad__tpart_t *parts;
  size_t n;
} cad__tpl_t;

/* ---- transforms ---- */
typedef enum {
  S_SET_VALUE = 1,
  S_SET_TEMPLATE,
  S_MOVE,
  S_CLEAR,
  S_MAP,
  S_REPLACE,
  S_UPPER,
  S_LOWER,
  S_TRIM,
  S_DATE,
  S_DELETE,
  S_ADD,
  S_RENAME,
  S_SELECT,
} cad__step_kind_t;

/* select: the repetitions of a field whose components hold given values
 * (`where: { 4: EPI, 5: MR }`: component 4 is EPI and component 5 is MR;
 * a list is any of its values). */
#define SELECT_MAX_CRIT 8
enum { MISSING_KEEP = 1, MISSING_CLEAR, MISSING_REJECT };
typedef struct cad__select {
  size_t ncrit;
  struct {
    int comp;        /* 1-based component number */
    cad_str_t *vals; /* decoded values, any of which matches */
    size_t nvals;
  } crit[SELECT_MAX_CRIT];
  int missing; /* MISSING_*: when no repetition matches */
} cad__select_t;

enum { DFLT_KEEP = 1, DFLT_EMPTY, DFLT_REJECT, DFLT_VALUE };
enum { DATE_PRECISION = 1, DATE_FORMAT };

/* Fused runs (routes_steps.c): the fields one run may touch (a longer list
 * ends the run), and the components of a field held apart. */
#define CAD__WS_FIELDS 8
#define CAD__WS_COMPS 32

/* The component-level form of a step in a fused run (cad__step_t.cop):
 *   COP_SET   `set` of a value to a component
 *   COP_COPY  `set`/`copy` whose template is one component of the occurrence
 *   COP_MAP   `map` of a component */
enum { COP_SET = 1, COP_COPY, COP_MAP };

struct cad__recipe; /* routes_recipe.c */

typedef struct cad__step {
  cad__step_kind_t kind;
  cad__rpath_t path; /* target */
  cad__rpath_t from; /* move: the source (copy is a template "${from}") */
  cad_str_t value;   /* set value; map default value; replace `with` */
  cad__tpl_t tpl;    /* set template / copy / add */
  const cad__table_t *table;
  int dflt;
  regex_t *re;
  int date_mode, precision;
  const char *fmt;
  char seg[4], to[4]; /* delete / rename / add after */
  uint32_t segid;
  bool has_after;
  cad__cond_t *when;                /* delete: per segment */
  cad__select_t *sel;               /* select */
  uint32_t fuse;                    /* > 0: this step starts a run of `fuse` steps that
                            edit one segment's fields and can be applied one
                            segment occurrence at a time (see routes_steps.c) */
  int slot;                         /* in a fused run: the workspace slot of its target field */
  bool value_std_plain;             /* value needs no escaping with standard delimiters */
  bool plain_out;                   /* in a fused run: what it writes never holds the
                            segment's component or repetition separator */
  uint8_t cop;                      /* in a fused run: a component-level form (COP_*,
                            routes_steps.c), 0 when none */
  bool comps_only;                  /* first step of a fused run whose every step has a
                            component-level form */
  const struct cad__recipe *recipe; /* first step of a fused run: the run
                                       compiled (routes_recipe.c), or NULL */
  bool defer;                       /* with a recipe, in an overlay route where no
                                       other run edits its segment: applied while
                                       the output is written (routes_overlay.c) */
} cad__step_t;

typedef struct cad__route {
  const char *name;
  cad__cond_t *when; /* NULL: every message */
  cad__step_t *steps;
  size_t nsteps;
  size_t *to;
  size_t nto;
  bool cont;
  bool overlay; /* every step is in a fused run and none reads a segment an
                   earlier run writes: applied as edits beside the message
                   (routes_overlay.c), without copying its tree */
} cad__route_t;

enum { UNROUTED_DROP = 1, UNROUTED_REJECT, UNROUTED_DEST };
enum { ON_ERROR_REJECT = 1, ON_ERROR_DEAD_LETTER };

struct cad_routes {
  cad_arena_t arena;
  cad__route_t *routes;
  size_t nroutes;
  int unrouted;
  size_t unrouted_dest;
  int on_error;
  char **dest_names;
  size_t ndests;
  size_t max_outs;
  const cad_tables_t *tables; /* referenced */
  regex_t **regexes;          /* to regfree */
  size_t nregexes, regexes_cap;
  bool stepwise; /* apply transforms step by step, never fused
                                 (cad_routes_set_stepwise; for tests) */
};

/* A standalone condition: a routes object that only owns the compiled tree. */
struct cad_route_cond {
  cad_routes_t *r;
  cad__cond_t *when;
};

/* ---- evaluation state ----
 *
 * Three files, dependencies one way: routes_eval.c (the routes of one
 * message) calls routes_steps.c (transforms) and routes_cond.c (conditions,
 * failures); routes_steps.c calls routes_cond.c; routes_cond.c calls
 * neither.  Messages are edited only through parsers/hl7's public API. */

/* The segment a step is working on: relative paths (no [occ]) on its segment
 * id mean that occurrence. */
typedef struct cad__ctx {
  uint32_t segid;
  int occ; /* 0: no current segment */
  int seg; /* its index in the message, -1 when unknown */
} cad__ctx_t;

/* No current segment. */
#define CAD__NO_CTX ((cad__ctx_t){0, 0, -1})

static inline cad_hl7_path_t cad__ctx_path(const cad__rpath_t *rp, const cad__ctx_t *cx) {
  cad_hl7_path_t p = rp->p;
  if (cx->occ && rp->relative && p.segid == cx->segid) p.occ = cx->occ;
  return p;
}

struct cad__ws; /* routes_steps.c: one segment's fields being edited */

/* ---- overlay (routes_overlay.c) ----
 *
 * The edits of a route whose steps only rewrite fields of segments the
 * message has (cad__route_t.overlay), recorded beside the message as received
 * instead of in a copy of its tree: per segment, the new text of each field
 * it changed.  The output is then written once, as the message's own bytes
 * with those fields replaced, which gives the bytes cad_hl7_serialize_span()
 * gives for a tree edited the same way.  Everything is in the arena. */
typedef struct cad__fedit {
  int field;             /* standard numbering */
  uint32_t ncomp;        /* 0: `text` holds the field; else comp[0..ncomp) joined
                      by `sep`, then `rest`, are its text (not joined: the
                      output is written from them directly) */
  cad_str_t text;        /* raw ER7 of the whole field (ncomp == 0) */
  const cad_str_t *comp; /* the first repetition's components */
  uint32_t padded;       /* bit k: comp[k] is padded (CAD__PAD) */
  size_t len;            /* the length of the text they make */
  cad_str_t rest;        /* from the first repetition separator on, or empty */
  char sep;              /* the component separator */
} cad__fedit_t;

typedef struct cad__segedits {
  uint32_t n, cap;
  cad__fedit_t *f;                  /* sorted by field, an arena array */
  const struct cad__recipe *recipe; /* applied when the output is written
                                       (cad__step_t.defer); then n == 0 */
} cad__segedits_t;

typedef struct cad__overlay {
  const cad_hl7_msg_t *m; /* the message as received (not changed) */
  cad__segedits_t *segs;  /* m->nsegs entries */
  size_t extra;           /* bound on the bytes the recorded edits add */
  size_t hint;            /* what deferred recipes may add: estimates (a map's
                             longest table value, per segment), so the output
                             counts them up to the input's size and grows
                             past that when they really add more */
  bool any;               /* an edit was recorded */
} cad__overlay_t;

/* 0, or CAD_E_NOMEM. */
int cad__overlay_init(cad__overlay_t *ov, const cad_hl7_msg_t *m, cad_arena_t *a);
/* The edit of field `field` of segment `seg`, or NULL when it has none. */
static inline const cad__fedit_t *cad__overlay_get(const cad__overlay_t *ov, uint32_t seg,
                                                   int field) {
  const cad__segedits_t *se = &ov->segs[seg];
  for (uint32_t i = 0; i < se->n; i++)
    if (se->f[i].field == field) return &se->f[i];
  return NULL;
}
/* Record (or replace) the text of a field: 0 or CAD_E_NOMEM. */
int cad__overlay_put(cad__overlay_t *ov, cad_arena_t *a, uint32_t seg, int field, cad_str_t text);
/* The same with the field given as components comp[0..ncomp) (ncomp >= 1,
 * at most 32, the array in the arena, not copied; bit k of `padded`: comp[k]
 * is padded), separator `sep`, then `rest`; `len` is the length of that
 * text. */
int cad__overlay_put_comps(cad__overlay_t *ov, cad_arena_t *a, uint32_t seg, int field,
                           const cad_str_t *comp, uint32_t ncomp, uint32_t padded, char sep,
                           cad_str_t rest, size_t len);
/* Segment `seg` is to be written by recipe r (cad__step_t.defer), which may
 * add up to about `hint` bytes. */
static inline void cad__overlay_defer(cad__overlay_t *ov, uint32_t seg, const struct cad__recipe *r,
                                      size_t hint) {
  ov->segs[seg].recipe = r;
  ov->hint += hint;
  ov->any = true;
}
struct cad__ev;
/* The message with its edits, as cad_routes_serialize() writes an edited
 * tree, recipes deferred to now applied with e: 0, CAD_E_NOMEM, or
 * CAD__REDO when a recipe cannot be applied (the caller takes the tree). */
int cad__overlay_serialize(const cad__overlay_t *ov, struct cad__ev *e, cad_str_t *out);

typedef struct cad__ev {
  const cad_routes_t *r;
  cad_arena_t *a;
  cad_hl7_msg_t *m;
  cad_route_result_t *res;
  int hl7_code; /* set when a step fails */
  int rc;
  struct cad__ws *ws; /* a fused run in progress, or NULL */
  cad__overlay_t *ov; /* edits recorded beside e->m (read only), or NULL */
} cad__ev_t;

/* routes_cond.c: fill res->diag for a failed step; returns rc. */
int cad__step_fail(cad__ev_t *e, int rc, int hl7, const cad_hl7_match_t *mt,
                   const cad_hl7_path_t *p, const char *why);
/* An internal failure (207): out of memory or an edit that cannot be made. */
int cad__internal(cad__ev_t *e, int rc);
/* 1 holds, 0 does not, < 0 failure. */
int cad__cond_eval(cad__ev_t *e, const cad__cond_t *k, const cad__ctx_t *cx);

/* routes_steps.c: mark the runs of steps that can be fused (sets
 * cad__step_t.fuse; recipes allocated from `a`). */
void cad__route_plan(cad__route_t *rt, cad_arena_t *a);
/* Apply a route's steps to e->m (a private copy of the tree).  Returns 0, or
 * < 0 with res->diag filled and *failed set to the 0-based index of the step
 * that failed.  Fused runs give the same result as applying every step in
 * order; whenever a fused run cannot finish (a step fails, a field has more
 * components or a segment more touched fields than the fused form holds) it
 * returns CAD__REDO and the caller rewinds the arena and applies the steps
 * one by one on a fresh copy, so errors are reported exactly as the
 * step-by-step path reports them. */
#define CAD__REDO 1
int cad__steps_apply(cad__ev_t *e, const cad__route_t *rt, bool fused, size_t *failed);

/* format_date: the text of date t as step st writes it (in the arena). */
int cad__date_format(cad__ev_t *e, const cad__step_t *st, const cad_hl7_dtm_t *t, cad_str_t *out);

/* routes_recipe.c: compile the fused run st[0..n) (slots and component
 * forms assigned) into st->recipe, allocated from `a`; left NULL when the
 * run does not fit one. */
void cad__recipe_plan(cad__step_t *st, size_t n, cad_arena_t *a);
/* Where text at p may be read ahead (16 bytes at a time): up to the end of
 * message m as received when p is inside it, else nowhere (NULL). */
static inline const char *cad__input_limit(const cad_hl7_msg_t *m, const char *p) {
  uintptr_t in = (uintptr_t)m->input.p, at = (uintptr_t)p;
  return p && at - in < m->input.len ? m->input.p + m->input.len : NULL;
}

/* Where pieces of the input may be read CAD__PAD bytes at a time: from `in`
 * up to `in + lim` (in = UINTPTR_MAX: nowhere). */
typedef struct cad__inrange {
  uintptr_t in, lim;
} cad__inrange_t;

static inline cad__inrange_t cad__inrange_of(const cad_hl7_msg_t *m) {
  if (m->input.len < CAD__PAD) return (cad__inrange_t){UINTPTR_MAX, 0};
  return (cad__inrange_t){(uintptr_t)m->input.p, m->input.len - CAD__PAD};
}

/* n bytes at p to o: one fixed-size move when CAD__PAD bytes may be read at
 * p (`padded`, or inside the input), without a branch on the length: values
 * differ from one segment to the next and such branches are mispredicted.
 * The conditions are combined without short-circuit for the same reason.
 * o has CAD__PAD bytes of room after where the piece ends. */
static inline char *cad__put_piece(char *o, const char *p, size_t n, bool padded,
                                   cad__inrange_t r) {
  bool readable = padded | ((uintptr_t)p - r.in <= r.lim);
  if ((n <= CAD__PAD) & readable) {
    memcpy(o, p, CAD__PAD);
    return o + n;
  }
  return o + cad_copy_small(o, p, n);
}

/* routes_overlay.c: a segment of cad__overlay_serialize()'s output being
 * written with new text for some of its fields, in ascending field order.
 * The writer (struct cad__wr) is private to routes_overlay.c. */
typedef struct cad__segw {
  struct cad__wr *w;
  const cad_hl7_seg_t *s;
  const char *pos; /* input written up to here */
  uint32_t nf;     /* fields the output has so far */
  cad__inrange_t r;
} cad__segw_t;
/* The input up to field `field` (empty fields added when the segment has
 * fewer) is written: returns where the field's new text goes and in *room
 * how many bytes may be written there (and CAD__PAD more), or NULL when out
 * of memory. */
char *cad__segw_begin(cad__segw_t *g, int field, size_t *room);
/* Room for n bytes (and CAD__PAD more) where the field's text goes, the
 * output grown when it has less (its buffer then moves): where the text
 * goes now, or NULL when out of memory. */
char *cad__segw_reserve(cad__segw_t *g, size_t n);
/* begin() with room for n bytes. */
static inline char *cad__segw_begin_n(cad__segw_t *g, int field, size_t n) {
  size_t room;
  char *o = cad__segw_begin(g, field, &room);
  return o && room < n ? cad__segw_reserve(g, n) : o;
}
/* The field's new text ends at o (within the room asked for). */
void cad__segw_end(cad__segw_t *g, char *o);

/* Apply a recipe to segment `seg` of e->m, which has the standard delimiters:
 * its fields are written by g (NULL: put back into e->ov, or into the tree
 * when there is no overlay).  0, or CAD__REDO (nothing reported) when the
 * fused form cannot do it or memory runs out. */
int cad__recipe_apply(cad__ev_t *e, const struct cad__recipe *r, uint32_t seg, cad__segw_t *g);
/* The start of every struct cad__recipe: what cad__recipe_hint() reads
 * (inline: it is asked once per occurrence). */
typedef struct cad__recipe_head {
  size_t extra;   /* bytes added besides copies */
  uint32_t nrefs; /* components copied */
} cad__recipe_head_t;
/* About how many bytes recipe r adds to segment `seg` of message m (a
 * hint for the output's size, not a bound: the writer grows the output).
 * Copies count once the segment's length, however many there are (counting
 * each would ask for copies x the segment up front). */
static inline size_t cad__recipe_hint(const struct cad__recipe *r, const cad_hl7_msg_t *m,
                                      uint32_t seg) {
  const cad__recipe_head_t *h = (const cad__recipe_head_t *)(const void *)r;
  return h->extra + (h->nrefs ? m->segs[seg].raw.len : 0);
}
/* Split field text t at the component separator cs up to the first
 * repetition separator rs (0: not declared, splits nothing) into
 * components (cp[k], cl[k]) for k < *n, at most CAD__WS_COMPS (else
 * CAD__REDO), and *rest.  `limit`:
 * NULL, or the end of a buffer holding t that may be read up to. */
int cad__split_comps(cad_str_t t, const char *limit, char cs, char rs, const char **cp, size_t *cl,
                     uint32_t *n, cad_str_t *rest);

/* The value of a match that is ASCII without the escape character: its
 * text as it is, as cad_hl7_value() gives it (the usual case, inline; conditions and
 * transforms). */
static inline bool cad__plain_value(const cad_hl7_match_t *mt, cad_str_t *v) {
  if (!mt->present) return false;
  const char esc = mt->d->esc;
  /* Pointer and length apart: the match may just have been stored in two
   * halves, and a whole 16-byte load of it would wait for both. */
  const char *p = mt->raw.p;
  size_t n = mt->raw.len;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if ((unsigned char)c >= 0x80 || (c == esc && esc)) return false;
  }
  v->p = p;
  v->len = n;
  return true;
}

#endif
