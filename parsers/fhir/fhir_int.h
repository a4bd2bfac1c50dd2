/* fhir_int.h - what the files of parsers/fhir share: the conversion context
 * and the data type maps (fhir_types.c). */
#ifndef CAD_FHIR_INT_H
#define CAD_FHIR_INT_H

#include "fhir.h"

/* "urn:uuid:" + 36 + NUL */
#define FHIR_URL_MAX 48

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
/* Field n of segment s, all repetitions. */
cad_str_t cad__fhir_field(const cad_hl7_seg_t *s, int n);
/* Decoded UTF-8 text of raw (escapes resolved, \.br\ as a line break,
 * spaces trimmed); empty for absent, empty and `""`. */
cad_str_t cad__fhir_text(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
/* The same as a JSON string, or NULL when empty. */
json_t *cad__fhir_str(fctx_t *c, const cad_hl7_delims_t *d, cad_str_t raw);
/* Text equal to a C string (case-insensitive when nocase). */
bool cad__fhir_is(cad_str_t s, const char *lit, bool nocase);

/* ---- building JSON ------------------------------------------------------- */

/* obj[key] = v when v is not NULL (v's reference is taken). */
void cad__fhir_set(fctx_t *c, json_t *obj, const char *key, json_t *v);
/* Append v to the array obj[key] (created when missing); v NULL: nothing. */
void cad__fhir_push(fctx_t *c, json_t *obj, const char *key, json_t *v);
json_t *cad__fhir_cstr(fctx_t *c, const char *s);
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
