/* fhir_int.h - what the files of parsers/fhir share: the conversion context
 * and the data type maps (fhir_types.c). */
#ifndef CAD_FHIR_INT_H
#define CAD_FHIR_INT_H

#include "fhir.h"

#include <string.h>
#include <strings.h>

#include "cad_error.h"

/* "urn:uuid:" + 36 + NUL */
#define FHIR_URL_MAX 48

/* Entries whose ids are compared one by one before a hash set is made. */
#define FHIR_IDS_INLINE 32

/* One resource being built: its JSON (owned by the Bundle's entry) and the
 * fullUrl others reference it by. */
typedef struct fres {
  json_t *res; /* borrowed from the entries array; NULL = none */
  char url[FHIR_URL_MAX];
} fres_t;

typedef struct fctx {
  const cad_hl7_msg_t *m;
  const cad_fhir_opts_t *o;
  cad_arena_t *a; /* scratch: decoded values, freed with the conversion */
  json_t *entries;
  cad_str_t msh10;
  char event[8];  /* MSH-9.2 (A01, R01, ...) */
  char tz[8];     /* zone for times without one: "+01:00", "" = none */
  uint32_t seg;   /* index of the segment being read */
  fres_t patient; /* the current PID */
  fres_t encounter;
  int err; /* first allocation failure */
  /* The ids of the entries so far (fhir_util.c): the first FHIR_IDS_INLINE
   * here, looked for one by one; past that, in the arena with a hash set
   * over them (a typical message touches no heap for them). */
  char (*ids)[36]; /* ids0, then the arena; NULL = ids0 */
  uint32_t nids, ids_cap;
  uint32_t *slots; /* index + 1 into ids, 0 = free; NULL while inline */
  uint32_t slots_cap;
  char ids0[FHIR_IDS_INLINE][36];
} fctx_t;

/* ---- reading values ------------------------------------------------------ */

/* Piece n (1-based) of s split on sep (empty when absent or sep is 0). */
static inline cad_str_t fpiece(cad_str_t s, char sep, int n) {
  cad_str_t out = {NULL, 0};
  if (!s.p) return out; /* an absent element: nothing to split */
  if (!sep) return n == 1 ? s : out;
  cad_hl7_piece(s, sep, n, &out);
  return out;
}
/* The pieces of s split on sep, one after the other, each found once (a
 * field of n repetitions is read in O(length), not O(n * length)):
 *
 *   fcur_t it = fcur(f, d->rep);  cad_str_t rep;
 *   while (fnext(&it, &rep)) ...
 *
 * An absent or empty s has no piece (as NREP counts repetitions); "a~" has
 * two, "a" and "".  sep 0: s is the one piece. */
typedef struct fcur {
  const char *p, *end;
  char sep;
  bool more;
} fcur_t;
static inline fcur_t fcur(cad_str_t s, char sep) {
  fcur_t it = {s.p, s.p ? s.p + s.len : NULL, sep, s.p != NULL && s.len > 0};
  return it;
}
static inline bool fnext(fcur_t *it, cad_str_t *out) {
  if (!it->more) return false;
  const char *q = it->sep ? memchr(it->p, it->sep, (size_t)(it->end - it->p)) : NULL;
  out->p = it->p;
  out->len = (size_t)((q ? q : it->end) - it->p);
  if (q) it->p = q + 1;
  else it->more = false;
  return true;
}
/* The first n pieces of s split on sep in one pass: out[k] is what
 * fpiece(s, sep, k + 1) gives, for k < n. */
static inline void fsplit(cad_str_t s, char sep, cad_str_t *out, int n) {
  int k = 0;
  if (s.p && !sep && n > 0) out[k++] = s;
  else if (s.p) {
    const char *p = s.p, *end = s.p + s.len;
    for (; k < n; k++) {
      const char *q = memchr(p, sep, (size_t)(end - p));
      out[k].p = p;
      out[k].len = (size_t)((q ? q : end) - p);
      if (!q) {
        k++;
        break;
      }
      p = q + 1;
    }
    /* the pieces past the last: empty at the end, as cad_hl7_piece says */
    for (; k < n; k++) out[k] = (cad_str_t){end, 0};
  }
  for (; k < n; k++) out[k] = (cad_str_t){NULL, 0};
}
/* Field n of segment s, all repetitions. */
cad_str_t cad__fhir_field(const cad_hl7_seg_t *s, int n);
/* Decoded UTF-8 text of raw (escapes resolved, \.br\ as a line break,
 * spaces trimmed); empty for absent, empty and `""`. */
cad_str_t cad__fhir_text(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
/* The same as a JSON string, or NULL when empty. */
json_t *cad__fhir_str(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
/* Text equal to a C string (case-insensitive when nocase); inline, so a
 * literal's length is counted by the compiler. */
static inline bool cad__fhir_is(cad_str_t s, const char *lit, bool nocase) {
  size_t n = strlen(lit);
  if (s.len != n) return false;
  if (n == 0) return true;
  return nocase ? strncasecmp(s.p, lit, n) == 0 : memcmp(s.p, lit, n) == 0;
}

/* ---- building JSON ------------------------------------------------------- */

/* Keys and literals are ASCII: jansson's UTF-8 check is skipped (_nocheck),
 * and, these being inline, the compiler counts a literal's length (jansson
 * 2.14's *n calls take it; older ones count it themselves). */
#if JANSSON_VERSION_HEX >= 0x020e00
#define FHIR_SETN(obj, key, v) json_object_setn_new_nocheck((obj), (key), strlen(key), (v))
#define FHIR_GETN(obj, key) json_object_getn((obj), (key), strlen(key))
#else
#define FHIR_SETN(obj, key, v) json_object_set_new_nocheck((obj), (key), (v))
#define FHIR_GETN(obj, key) json_object_get((obj), (key))
#endif

/* obj[key] = v when v is not NULL (v's reference is taken). */
static inline void cad__fhir_set(fctx_t *c, json_t *obj, const char *key, json_t *v) {
  if (!v) return;
  if (!obj) {
    json_decref(v);
    c->err = CAD_E_NOMEM;
  } else if (FHIR_SETN(obj, key, v) != 0) {
    c->err = CAD_E_NOMEM; /* set_new released v */
  }
}
/* Append v to the array obj[key] (created when missing); v NULL: nothing. */
static inline void cad__fhir_push(fctx_t *c, json_t *obj, const char *key, json_t *v) {
  if (!v) return;
  json_t *arr = obj ? FHIR_GETN(obj, key) : NULL;
  if (obj && !arr) {
    arr = json_array();
    if (arr && FHIR_SETN(obj, key, arr) != 0) arr = NULL;
  }
  if (!arr || json_array_append_new(arr, v) != 0) {
    if (!arr) json_decref(v);
    c->err = CAD_E_NOMEM;
  }
}
/* A JSON string of an ASCII literal (or of text known to be UTF-8). */
static inline json_t *cad__fhir_cstr(fctx_t *c, const char *s) {
  json_t *j = json_stringn_nocheck(s, strlen(s));
  if (!j) c->err = CAD_E_NOMEM;
  return j;
}
/* The same from n bytes. */
static inline json_t *cad__fhir_strn(fctx_t *c, const char *s, size_t n) {
  json_t *j = json_stringn_nocheck(s, n);
  if (!j) c->err = CAD_E_NOMEM;
  return j;
}
/* {"reference": url} */
json_t *cad__fhir_ref(fctx_t *c, const fres_t *r);
/* A new entry (fullUrl, resource, request PUT) for a resource of `type`
 * whose id is the hash of the given key parts; r gets it. */
int cad__fhir_new(fctx_t *c, const char *type, const char *key1, cad_str_t key2, fres_t *r);
/* A resource id shaped as a UUID from a hash of the parts. */
void cad__fhir_uuid(const char *const *parts, const size_t *lens, size_t n, char out[37]);

/* ---- data types (fhir_types.c) ------------------------------------------ */

json_t *cad__fhir_cx(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep);  /* Identifier */
json_t *cad__fhir_ei(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep);  /* Identifier */
json_t *cad__fhir_xpn(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep); /* HumanName */
json_t *cad__fhir_xad(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep); /* Address */
/* ContactPoint; use_default "home"/"work" when XTN-2 says nothing. */
json_t *cad__fhir_xtn(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep, const char *use_default);
json_t *cad__fhir_cwe(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep); /* CodeableConcept */
/* A code of an HL7 table as a CodeableConcept with the v2 table's system. */
json_t *cad__fhir_table(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep, int table);
json_t *cad__fhir_xcn(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep); /* Reference */
json_t *cad__fhir_pl(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t rep);  /* Reference */
/* FHIR dateTime / date / instant from an HL7 DTM (NULL when not one). */
json_t *cad__fhir_datetime(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
json_t *cad__fhir_date(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
json_t *cad__fhir_instant(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
/* An HL7 NM as a JSON number (NULL when not a number). */
json_t *cad__fhir_number(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
/* URI of a coding system named in a CWE (LN, SCT, HL70001, ...) or the
 * systems table; NULL when unknown. */
const char *cad__fhir_code_system(fctx_t *c, cad_str_t name, char *buf, size_t cap);
/* URI of an identifier's assigning authority (namespace, universal id and
 * its type), from the table or an OID/UUID/URI; NULL when unknown. */
const char *cad__fhir_id_system(fctx_t *c, cad_str_t ns, cad_str_t uid, cad_str_t uid_type,
                                char *buf, size_t cap);

#endif
