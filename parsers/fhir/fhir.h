/* fhir.h - HL7 v2 to FHIR R4, and the other encodings a destination can
 * deliver a message in (`format: er7 | fhir | json | xml`).
 *
 * cad_fhir_convert() turns one parsed HL7 v2 message into one FHIR R4
 * transaction Bundle, following the segment and data type maps of the HL7
 * v2-to-FHIR Implementation Guide (docs/fhir.md lists what is mapped and what
 * is not):
 *
 *   ADT^A01/A02/A03/A04/A08/A11/A13/A28/A31  Patient (PID, PD1), Encounter
 *       (PV1, PV2), RelatedPerson (NK1), AllergyIntolerance (AL1),
 *       Condition (DG1), Coverage (IN1)
 *   ORU^R01      Patient, Encounter, DiagnosticReport (OBR), Observation
 *                (OBX, NTE as notes), Specimen (SPM)
 *   VXU^V04      Patient, Immunization (RXA, RXR)
 *   ORM^O01, OML^O21   Patient, ServiceRequest (ORC + OBR)
 *   MDM^T02      Patient, DocumentReference (TXA + OBX)
 *
 * Every entry has a deterministic id (a UUID-shaped hash: of the patient's
 * first identifier for Patient, of the visit number for Encounter, else of
 * MSH-10, the segment's position and the resource type), a fullUrl
 * "urn:uuid:<id>" that the other entries reference, and a PUT request (so a
 * message delivered twice updates the same resources).  Values are decoded
 * (escapes, Windows-1252 to UTF-8); an empty component and the explicit null
 * `""` both leave the element out (a PUT replaces the whole resource, so an
 * element left out is removed on the server).
 *
 * Memory: nothing is kept between calls.  The Bundle is a jansson tree the
 * caller owns (json_decref); rendered bytes go to the caller's cad_buf_t.
 * Thread safety: the functions share no state.
 */
#ifndef CAD_FHIR_H
#define CAD_FHIR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cad_mem.h"
#include "hl7.h"

/* The most entries one Bundle may have: a message that would give more is
 * refused (CAD_E_TOOBIG), so that a hostile message cannot make the
 * conversion hold more than about this many resources in memory (the
 * jansson tree of one entry is ~1-3 KB, its JSON ~1 KB). */
#define CAD_FHIR_MAX_ENTRIES 10000

/* An identifier system: the assigning authority as written in the message
 * (CX-4.1, EI-2, or the universal id CX-4.2) and the URI to use. */
typedef struct cad_fhir_system {
  const char *authority;
  const char *uri;
} cad_fhir_system_t;

/* Conversion options (`fhir:` in the configuration).  Borrowed: the caller
 * keeps them alive while converting. */
typedef struct cad_fhir_opts {
  const cad_fhir_system_t *systems; /* authority -> URI, looked up first */
  size_t nsystems;
  /* Offset ("+01:00", "-05:00", "Z") for times that carry none when MSH-7
   * carries none either: FHIR requires a zone on every time.  NULL: such a
   * value keeps its date only. */
  const char *tz;
  bool pretty; /* indented output (the command); compact otherwise */
} cad_fhir_opts_t;

/* Why a message could not be converted: PHI-free. */
typedef struct cad_fhir_diag {
  int code;         /* CAD_E_* */
  char reason[128]; /* "unsupported message type ADT^A40" */
} cad_fhir_diag_t;

/* The Bundle for message m (which must have parsed).  0 and *out a new
 * tree, or CAD_E_INVAL (unsupported message type; diag says which),
 * CAD_E_TOOBIG (more than CAD_FHIR_MAX_ENTRIES resources) or CAD_E_NOMEM.  `o` may be NULL (no systems table, no default zone). */
int cad_fhir_convert(const cad_hl7_msg_t *m, const cad_fhir_opts_t *o, json_t **out,
                     cad_fhir_diag_t *diag);

/* Parse `len` bytes at p and append its Bundle as JSON to out. */
int cad_fhir_bundle(const char *p, size_t len, const cad_fhir_opts_t *o, cad_buf_t *out,
                    cad_fhir_diag_t *diag);

/* ---- formats of delivery (render.c) --------------------------------------
 *
 *   er7   the message as it is (ER7, segments ended by CR)
 *   fhir  the FHIR R4 transaction Bundle (application/fhir+json)
 *   json  the tree of `caduceus parse --json`: {"segments":[{"segment":"MSH",
 *         "path":"MSH","fields":[{"path":"MSH-1","value":"|"}, ...]}]}; a
 *         leaf has "value" (decoded) and "null": true for `""`, an element
 *         with structure "raw" and "children"
 *   xml   the HL7 v2 XML encoding: <ORU_R01 xmlns="urn:hl7-org:v2xml"> with
 *         one element per segment, <PID.3> per field (once per repetition),
 *         <PID.3.1> per component (<PID.3.1.2> per subcomponent); the v2.xml
 *         schemas name components after their data type (<CX.1>), which needs
 *         the data type tables this engine does not carry: docs/fhir.md. */
typedef enum {
  CAD_FORMAT_ER7 = 0,
  CAD_FORMAT_FHIR,
  CAD_FORMAT_JSON,
  CAD_FORMAT_XML,
} cad_format_t;

/* "er7" ... "xml" -> *out; 0 or CAD_E_INVAL. */
int cad_format_parse(const char *name, cad_format_t *out);
const char *cad_format_name(cad_format_t f);
/* The media type an HTTP destination sends it with. */
const char *cad_format_content_type(cad_format_t f);

/* Append message p/len rendered in format f to out.  0, or CAD_E_* when the
 * message does not parse or convert (diag, may be NULL, says why). */
int cad_render(cad_format_t f, const char *p, size_t len, const cad_fhir_opts_t *o, cad_buf_t *out,
               cad_fhir_diag_t *diag);

/* The json format's tree of a parsed message ({"segments": [...]}); the
 * caller owns it.  NULL on allocation failure. */
json_t *cad_render_json_tree(const cad_hl7_msg_t *m, cad_arena_t *a);

/* The id scheme (exposed for tests): a UUID-shaped (RFC 9562 version 8)
 * hash of n byte strings, written to out (36 characters and a NUL). */
void cad__fhir_uuid(const char *const *parts, const size_t *lens, size_t n, char out[37]);

/* Write a jansson tree to out (compact, or indented by 2 when pretty),
 * keys in insertion order.  0 or CAD_E_NOMEM. */
int cad_json_dump_buf(const json_t *j, bool pretty, cad_buf_t *out);

#endif
