/* hl7.h - the HL7 v2 (ER7, "pipe and hat") message tree.
 *
 * Parse once, without copying.  cad_hl7_parse() indexes a message's segments
 * and fields as spans into the caller's bytes; repetitions, components and
 * subcomponents are located inside a field's span when they are read (a field
 * is short, so that is a small bounded scan), and escape sequences are decoded
 * only when a value is read.  So the tree is
 *
 *     message > segments > fields > repetitions > components > subcomponents
 *
 * with the first two levels stored and the last three computed.
 *
 * Delimiters come from each header segment (MSH, BHS, FHS): the character
 * after the segment id is the field separator (MSH-1) and the following
 * characters up to the next field separator are the encoding characters
 * (MSH-2: component, repetition, escape, subcomponent and, from v2.7, the
 * truncation character).  A buffer holding several messages (a batch file) is
 * parsed as one segment list; each segment uses the delimiters of the header
 * segment before it.
 *
 * Segment terminators: \r (standard), \n and \r\n are all accepted; a final
 * terminator is optional.  Empty lines between segments are skipped.
 *
 * Memory: the message struct is the caller's; segment and field arrays and
 * every edited value live in the caller's arena (cad_arena_t), released with
 * it.  The input bytes are borrowed: they must outlive the message and must
 * not change while it is used.  Nothing here calls malloc directly.
 *
 * Thread safety: a message may be read from several threads at once; editing
 * needs exclusive access.
 */
#ifndef CAD_HL7_H
#define CAD_HL7_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cad_mem.h"

/* A borrowed string: p points into a message's input or arena. */
typedef struct cad_str {
  const char *p;
  size_t len;
} cad_str_t;

/* Same bytes. */
static inline bool cad_str_eq(cad_str_t a, cad_str_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

typedef struct cad_hl7_delims {
  char field; /* MSH-1, '|' */
  char comp;  /* '^' */
  char rep;   /* '~' */
  char esc;   /* '\\'; 0 when the message declares none */
  char sub;   /* '&'; 0 when the message declares none */
  char trunc; /* '#' (v2.7+); 0 when absent */
} cad_hl7_delims_t;

/* Delimiters of a standard message: | ^ ~ \ & (no truncation character). */
extern const cad_hl7_delims_t cad_hl7_default_delims;

/* One segment. Field spans are stored as in the raw text: span 0 is the
 * segment id; for header segments (MSH/BHS/FHS) span 1 is the encoding
 * characters (MSH-2), so field n >= 2 is span n-1; for other segments field n
 * is span n.  Use cad_hl7_field() rather than indexing by hand. */
typedef struct cad_hl7_seg {
  cad_str_t raw;       /* whole segment without terminator */
  cad_str_t *fields;   /* spans (arena or shared field array) */
  uint32_t nfields;    /* number of spans, including the id */
  uint32_t fields_cap; /* 0: fields is shared with the parse (read-only);
                             otherwise a private arena copy with this room */
  uint32_t id;         /* the 3-character id packed as 'A'<<16|'B'<<8|'C' */
  char name[4];        /* NUL-terminated id */
  cad_hl7_delims_t d;  /* delimiters in force for this segment */
  uint32_t offset;     /* byte offset of the segment in the input */
  bool header;         /* MSH, BHS or FHS */
  bool dirty;          /* fields changed: serialize from fields, not raw */
} cad_hl7_seg_t;

/* Limits on untrusted input; zero means the default given. */
typedef struct cad_hl7_limits {
  size_t max_bytes;      /* default 16 MiB */
  uint32_t max_segments; /* default 100000 */
  uint32_t max_fields;   /* per segment, default 1000 */
} cad_hl7_limits_t;

/* What went wrong, precisely enough to build an ERR segment. */
typedef struct cad_hl7_diag {
  int code;         /* CAD_E_* */
  int hl7_code;     /* HL7 table 0357: 100 segment sequence, 101 required
                        field missing, 102 data type, 103 table value not
                        found, 200 unsupported message type, 203 unsupported
                        version, 207 application internal error, 0 = none */
  uint32_t segment; /* 1-based segment number, 0 = not applicable */
  char seg_id[4];   /* segment id when known */
  uint32_t field;   /* field number, 0 = not applicable */
  size_t offset;    /* byte offset in the input */
  char reason[96];  /* short, PHI-free text */
} cad_hl7_diag_t;

typedef struct cad_hl7_msg {
  cad_str_t input;     /* borrowed input bytes */
  cad_hl7_seg_t *segs; /* arena */
  uint32_t nsegs;
  uint32_t segs_cap;
  cad_hl7_delims_t d;    /* delimiters of the first header segment */
  cad_arena_t *arena;    /* borrowed: where the tree and edits live */
  bool dirty;            /* any change since parse */
  bool final_terminator; /* input ended with a segment terminator */
} cad_hl7_msg_t;

/* Parse `len` bytes at `p` into `m`.  The first segment must be MSH, BHS or
 * FHS.  Returns 0, or a negative CAD_E_* with `diag` (may be NULL) filled in.
 * The message is usable (partially) only when 0 is returned. */
int cad_hl7_parse(cad_hl7_msg_t *m, const char *p, size_t len, cad_arena_t *arena,
                  const cad_hl7_limits_t *limits, cad_hl7_diag_t *diag);

/* ---- paths --------------------------------------------------------------
 *
 *   SEG[occ]-field[rep].component.subcomponent
 *
 *   PID-3          whole field 3 of the first PID (all repetitions, raw)
 *   PID-3[2]       second repetition
 *   PID-3[2].1     its first component
 *   PID-5.1.2      first repetition, component 1, subcomponent 2
 *   OBX[3]-5       field 5 of the third OBX
 *   OBX[*]-5       field 5 of every OBX;  PID-3[*].1 every repetition
 *   MSH-9.2        MSH-1 is the field separator, MSH-2 the encoding characters
 *
 * Indexes are 1-based; an omitted one means 1 (except an omitted repetition
 * on a path that stops at the field, which means the whole field).  Segment
 * ids are 3 characters [A-Z0-9] (lower case is accepted and upper-cased). */

#define CAD_HL7_ALL (-1) /* the [*] wildcard */

typedef struct cad_hl7_path {
  char seg[4];    /* segment id */
  uint32_t segid; /* packed id, as cad_hl7_seg_t.id */
  int occ;        /* segment occurrence, 1-based; CAD_HL7_ALL */
  int field;      /* 0 = the whole segment */
  int rep;        /* 0 = whole field; CAD_HL7_ALL */
  int comp;       /* 0 = whole repetition */
  int sub;        /* 0 = whole component */
} cad_hl7_path_t;

/* Parse a path. Returns 0, or CAD_E_PATH with *errpos (may be NULL) set to
 * the byte offset of the problem and *errmsg (may be NULL) to a static text. */
int cad_hl7_path_parse(const char *s, size_t len, cad_hl7_path_t *out, size_t *errpos,
                       const char **errmsg);
/* Write a path back in canonical form into buf (NUL-terminated, truncated to
 * cap). Returns the length it needed. */
size_t cad_hl7_path_format(const cad_hl7_path_t *p, char *buf, size_t cap);

/* ---- reading ------------------------------------------------------------ */

/* The i-th (0-based) segment, or NULL. */
static inline const cad_hl7_seg_t *cad_hl7_seg(const cad_hl7_msg_t *m, uint32_t i) {
  return i < m->nsegs ? &m->segs[i] : NULL;
}

/* Index of the occ-th (1-based) segment with id `segid` at or after segment
 * `from`, or -1. */
int cad_hl7_find_seg(const cad_hl7_msg_t *m, uint32_t segid, int occ, uint32_t from);

/* Pack a 3-character id ("PID") as used in cad_hl7_seg_t.id. */
static inline uint32_t cad_hl7_segid(const char *s) {
  return ((uint32_t)(unsigned char)s[0] << 16) | ((uint32_t)(unsigned char)s[1] << 8) |
         (uint32_t)(unsigned char)s[2];
}

/* A header segment id (MSH, BHS, FHS), packed as cad_hl7_segid() does. */
static inline bool cad_hl7_is_header_id(uint32_t id) {
  return id == (('M' << 16) | ('S' << 8) | 'H') || id == (('B' << 16) | ('H' << 8) | 'S') ||
         id == (('F' << 16) | ('H' << 8) | 'S');
}

/* Raw text of field n (1-based, standard numbering) of a segment.  MSH-1 is
 * the one-character field separator (pointing into the input); MSH-2 the
 * encoding characters.  Returns false (and an empty span) when the segment
 * has fewer fields. */
bool cad__hl7_field_sep(const cad_hl7_seg_t *s, cad_str_t *out); /* MSH-1: hl7.c */
static inline bool cad_hl7_field(const cad_hl7_seg_t *s, int n, cad_str_t *out) {
  out->p = NULL;
  out->len = 0;
  if (n < 1) return false;
  uint32_t idx = (uint32_t)n;
  if (s->header) {
    if (n == 1) return cad__hl7_field_sep(s, out);
    idx--;
  }
  if (idx >= s->nfields) return false;
  *out = s->fields[idx];
  return true;
}

/* Number of fields (standard numbering: for MSH this counts MSH-1). */
int cad_hl7_nfields(const cad_hl7_seg_t *s);

/* The n-th (1-based) piece of `in` split on `sep`.  Returns false when there
 * are fewer pieces.  Used for repetitions, components and subcomponents. */
bool cad_hl7_piece(cad_str_t in, char sep, int n, cad_str_t *out);
/* Number of pieces of `in` split on `sep` (an empty string has 1). */
int cad_hl7_npieces(cad_str_t in, char sep);

/* Resolve a path without wildcards in segment `s` (ignores p->seg/occ).
 * Returns true and the raw (still escaped) text when the element is present,
 * false (and an empty span) when absent.  MSH-1 and MSH-2 are never split. */
bool cad_hl7_resolve_in_seg(const cad_hl7_seg_t *s, const cad_hl7_path_t *p, int rep,
                            cad_str_t *out);

/* The same inside one field's raw text `f` (of a segment with delimiters d,
 * not MSH-1/MSH-2): the repetition, component and subcomponent of p. */
bool cad_hl7_resolve_in_field(cad_str_t f, const cad_hl7_delims_t *d, const cad_hl7_path_t *p,
                              int rep, cad_str_t *out);

/* One match of a path. */
typedef struct cad_hl7_match {
  cad_str_t raw;      /* raw text; empty when absent */
  bool present;       /* the element exists in the message */
  uint32_t seg_index; /* 0-based index in m->segs */
  int occ;            /* which occurrence of the segment (1-based) */
  int rep;            /* which repetition (1-based), 0 when whole field */
  const cad_hl7_delims_t *d;
} cad_hl7_match_t;

/* Iterate over every match of a path (wildcards expand; a path without
 * wildcards has at most one match).  An occurrence of the segment whose
 * element is absent yields a match with present == false, so that
 * OBX[*]-5 gives exactly one match per OBX segment.  A path whose segment does
 * not occur yields nothing. */
typedef struct cad_hl7_iter {
  const cad_hl7_msg_t *m;
  cad_hl7_path_t p;
  uint32_t next_seg; /* where to look for the next segment */
  int occ;           /* occurrences of the segment seen so far */
  int cur_seg;       /* segment being expanded over repetitions, or -1 */
  int next_rep;      /* next repetition to yield when rep == ALL */
  bool done;
} cad_hl7_iter_t;

void cad_hl7_iter_init(cad_hl7_iter_t *it, const cad_hl7_msg_t *m, const cad_hl7_path_t *p);
bool cad_hl7_iter_next(cad_hl7_iter_t *it, cad_hl7_match_t *out);

/* The first match of a path (wildcards take the first). Returns true when
 * present. */
bool cad_hl7_get(const cad_hl7_msg_t *m, const cad_hl7_path_t *p, cad_hl7_match_t *out);

/* What a raw value is. */
typedef enum {
  CAD_HL7_ABSENT = 0, /* not in the message */
  CAD_HL7_EMPTY,      /* present, zero length */
  CAD_HL7_NULL,       /* the explicit null "" (two double quotes) */
  CAD_HL7_VALUE,      /* anything else */
} cad_hl7_kind_t;

cad_hl7_kind_t cad_hl7_kind(const cad_hl7_match_t *mt);

/* True when the matched text has no structure below the path's level (a
 * field without repetitions, components or subcomponents; a component
 * without subcomponents; ...).  MSH-1 and MSH-2 are always leaves. */
bool cad_hl7_is_leaf(const cad_hl7_path_t *p, const cad_hl7_match_t *mt);

/* The value to show for a match: a leaf is decoded (into the arena when it
 * has escapes), an element with structure is its raw encoded text, an absent
 * element is empty; in every case as UTF-8 text (see cad_hl7_text below).
 * Returns false on allocation failure. */
bool cad_hl7_value(const cad_hl7_path_t *p, const cad_hl7_match_t *mt, cad_arena_t *a,
                   cad_str_t *out);

/* ---- escapes ------------------------------------------------------------
 *
 * Decoding (reading a value): \F\ \S\ \T\ \R\ \E\ become the message's own
 * field, component, subcomponent, repetition and escape characters; \P\ the
 * truncation character; \Xhhhh..\ the bytes it spells.  Formatting escapes
 * (\.br\ \.sp\ \.in\ \.ti\ \.sk\ \.ce\ \.fi\ \.nf\ \H\ \N\), character-set
 * escapes (\Cxxyy\ \Mxxyyzz\), \Z..\ and anything unknown or malformed are
 * kept verbatim, so no information is lost (this is also what HAPI does).
 * A value that does not need decoding is returned without copying. */

/* Decode raw into out (which must have room for raw.len bytes: decoding never
 * lengthens).  Returns the decoded length. */
size_t cad_hl7_unescape(const cad_hl7_delims_t *d, cad_str_t raw, char *out);
/* True when raw contains the escape character (cheap test). */
bool cad_hl7_needs_unescape(const cad_hl7_delims_t *d, cad_str_t raw);
/* Decode into the arena (or return raw itself when nothing to decode).
 * Returns false on allocation failure. */
bool cad_hl7_decode(const cad_hl7_delims_t *d, cad_str_t raw, cad_arena_t *a, cad_str_t *out);

/* Encode text for use as a leaf value: each delimiter becomes its escape
 * (\F\ \S\ \T\ \R\ \E\ \P\), CR becomes \X0D\ and LF \X0A\.  out needs
 * 5 * len bytes at most. Returns the encoded length. */
size_t cad_hl7_escape(const cad_hl7_delims_t *d, const char *p, size_t len, char *out);

/* Character sets.  Values are bytes as received; for display and comparison
 * cad_hl7_value() returns UTF-8: input that is valid UTF-8 (which includes
 * ASCII) is returned as it is, anything else is read as Windows-1252 (a
 * superset of ISO-8859-1's printable characters, the usual legacy encoding)
 * and converted.  Serialization always writes the original bytes. */
bool cad_hl7_is_utf8(const char *p, size_t len);
/* out needs 3 * len bytes. Returns the UTF-8 length. */
size_t cad_hl7_cp1252_to_utf8(const char *p, size_t len, char *out);
/* `in` as UTF-8 (itself when already valid UTF-8, else converted into the
 * arena). Returns false on allocation failure. */
bool cad_hl7_text(cad_str_t in, cad_arena_t *a, cad_str_t *out);

/* ---- editing ------------------------------------------------------------
 *
 * Edits are recorded in the arena beside the original bytes: the changed
 * segment gets a private copy of its field array and the changed field a new
 * span.  Unchanged segments still point into the input, so serialization
 * copies them verbatim. */

enum {
  CAD_HL7_SET_RAW = 1, /* the value is already encoded ER7: do not escape */
};

/* Set the element at path p (wildcards apply to every match) to `val`.
 * Missing repetitions, components, subcomponents and fields are created; a
 * missing segment is appended at the end of the message (only when p->occ is
 * 1 or ALL; never a header segment: CAD_E_NOTFOUND).  MSH-1 and MSH-2 cannot be set.  Returns the number of elements
 * changed (>= 0) or a negative CAD_E_*. */
int cad_hl7_set(cad_hl7_msg_t *m, const cad_hl7_path_t *p, const char *val, size_t len,
                unsigned flags);
/* Set one element of segment i (0-based): field p->field, repetition rep
 * (0 = the whole field when p->comp is 0; wildcards are not expanded),
 * component p->comp, subcomponent p->sub; p->seg and p->occ are ignored.
 * `val` is text, escaped for the segment's delimiters only when it holds one
 * of them or a line break, or ER7 as it is with CAD_HL7_SET_RAW.  Missing
 * fields, repetitions and components are created.  0, CAD_E_NOTFOUND (no
 * segment i), CAD_E_INVAL (field 0, MSH-1/MSH-2, or a separator to add that
 * the message does not declare) or CAD_E_NOMEM.  The path for editors that
 * have found the segment already (routes' transforms). */
int cad_hl7_seg_set(cad_hl7_msg_t *m, uint32_t i, const cad_hl7_path_t *p, int rep, const char *val,
                    size_t len, unsigned flags);
/* `text` as ER7 for delimiters d: itself (no copy) when it holds no
 * delimiter and no line break, else escaped into the arena.  0 or
 * CAD_E_NOMEM. */
/* The general case of cad_hl7_encode (hl7_edit.c). */
int cad__hl7_encode(const cad_hl7_delims_t *d, cad_str_t text, cad_arena_t *a, cad_str_t *out);
static inline int cad_hl7_encode(const cad_hl7_delims_t *d, cad_str_t text, cad_arena_t *a,
                                 cad_str_t *out) {
  /* The usual case inline: standard delimiters and nothing to escape.
   * Bit 1: a delimiter or line break; bit 2: '#', the truncation character
   * when the message declares one. */
  static const unsigned char std[256] = {
      ['\r'] = 1, ['\n'] = 1, ['|'] = 1, ['^'] = 1, ['~'] = 1, ['\\'] = 1, ['&'] = 1, ['#'] = 2};
  if (d->field == '|' && d->comp == '^' && d->rep == '~' && d->esc == '\\' && d->sub == '&' &&
      (d->trunc == 0 || d->trunc == '#')) {
    unsigned char hit = d->trunc ? 3 : 1;
    bool plain = true;
    for (size_t i = 0; i < text.len && plain; i++) plain = !(std[(unsigned char)text.p[i]] & hit);
    if (plain) {
      *out = text;
      return 0;
    }
  }
  return cad__hl7_encode(d, text, a, out);
}
/* A copy of src to edit: a segment array of its own in arena `a` (where its
 * edits are recorded too); fields and values stay shared with src until
 * written (copy on write), so editing dst never changes src.  src (and its
 * input and arena) must outlive dst.  0 or CAD_E_NOMEM. */
int cad_hl7_clone(const cad_hl7_msg_t *src, cad_arena_t *a, cad_hl7_msg_t *dst);
/* Set to empty (the element stays, with no content). */
int cad_hl7_clear(cad_hl7_msg_t *m, const cad_hl7_path_t *p);
/* Delete segment i (0-based).  A header segment (MSH, BHS, FHS) cannot be
 * deleted (CAD_E_INVAL): the segments after it are written in its
 * delimiters. */
int cad_hl7_seg_delete(cad_hl7_msg_t *m, uint32_t i);
/* Insert a segment given as raw ER7 text in the message's delimiters (no
 * terminator) before index i (i == nsegs appends).  The text is copied. */
int cad_hl7_seg_insert(cad_hl7_msg_t *m, uint32_t i, const char *raw, size_t len);
/* Change a segment's id (e.g. rename ZXX to ZYY). */
int cad_hl7_seg_rename(cad_hl7_msg_t *m, uint32_t i, const char id[3]);

/* ---- writing ------------------------------------------------------------
 *
 * An unchanged message is written back byte for byte, except that every
 * segment terminator (\r\n, \n) is normalised to \r; whether the input ended
 * with a terminator is kept.  A changed message is written segment by segment,
 * each followed by \r (unchanged segments verbatim). */
int cad_hl7_serialize(const cad_hl7_msg_t *m, cad_buf_t *out);

/* The bytes cad_hl7_serialize() writes, as one span: the input itself (no
 * copy) when the message is unchanged and has only \r terminators, else a
 * copy in arena `a`.  0 or CAD_E_NOMEM. */
int cad_hl7_serialize_span(const cad_hl7_msg_t *m, cad_arena_t *a, cad_str_t *out);

/* One segment's bytes without its terminator: how many, and writing them to
 * out (which needs cad_hl7_seg_size() bytes; returns the count written). */
size_t cad_hl7_seg_size(const cad_hl7_seg_t *s);
size_t cad_hl7_seg_write(const cad_hl7_seg_t *s, char *out);

/* ---- dates and times (hl7_dtm.c) -----------------------------------------
 *
 * An HL7 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ].  Nothing else
 * is accepted (no separators, fractions only after the seconds, at most four
 * digits).  The one parser of the project: routes, replay and preview use it. */
typedef struct cad_hl7_dtm {
  int v[7]; /* year, month, day, hour, minute, second, 1e-4 seconds */
  int prec; /* how many of v[] were given: 1 (year) .. 7 */
  bool has_tz;
  int tz_min; /* offset from UTC in minutes */
} cad_hl7_dtm_t;

bool cad_hl7_dtm_parse(const char *p, size_t len, cad_hl7_dtm_t *out);
/* <0, 0, >0 comparing at the precision both have (in UTC when both have a
 * zone and say the hour at least). */
int cad_hl7_dtm_cmp(const cad_hl7_dtm_t *a, const cad_hl7_dtm_t *b);
/* Seconds since the epoch; a value without a zone is read as UTC, missing
 * parts as their first value (month 1, day 1, 00:00:00). */
double cad_hl7_dtm_seconds(const cad_hl7_dtm_t *t);

/* ---- difference by path (hl7_diff.c) -------------------------------------
 *
 * Compare two parsed messages segment by segment and report each smallest
 * element that differs, by path: OBX[2]-3.1, PID-3[2].1, ZPI-4.1.2.  A
 * field is split into repetitions, components and subcomponents only where
 * either side has them; a segment that repeats is named with [occurrence]
 * (counted in `a`).  Values are raw (still escaped).  Used by `caduceus test`
 * (expected against got) and `caduceus preview` (before against after). */
typedef struct cad_hl7_diff {
  uint32_t seg;               /* 1-based segment number */
  const cad_hl7_seg_t *a_seg; /* NULL when `a` has no segment there */
  const cad_hl7_seg_t *b_seg; /* NULL when `b` has no segment there */
  const char *path;           /* the element; NULL when the segments differ
                                  (one is missing, or their ids differ) */
  cad_str_t a, b;             /* the element's raw values (empty when absent) */
} cad_hl7_diff_t;

typedef void (*cad_hl7_diff_fn)(void *ctx, const cad_hl7_diff_t *d);

/* Calls fn once per difference (d and its strings are valid during the
 * call).  Returns the number of differences reported. */
size_t cad_hl7_diff(const cad_hl7_msg_t *a, const cad_hl7_msg_t *b, cad_hl7_diff_fn fn, void *ctx);

/* Human readable name of an HL7 table 0357 code ("Segment sequence error"). */
const char *cad_hl7_err_text(int hl7_code);

#endif
