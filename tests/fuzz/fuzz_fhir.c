/* fuzz_fhir.c - libFuzzer target for HL7 v2 to FHIR (parsers/fhir/fhir.h)
 * and the json / xml delivery formats.
 *
 * For any input that parses (a first byte below 8 forces a supported
 * MSH-9, so that every mapping is reached): the
 * conversion succeeds or refuses cleanly; a Bundle is valid JSON once
 * written, the same when converted twice, every entry has a urn:uuid
 * fullUrl, an id and a resourceType, every urn:uuid reference names an
 * entry, and no value is the HL7 null `""` or an empty string.  The json
 * format reloads as JSON; the xml format has balanced elements.  Any
 * inconsistency aborts, so libFuzzer records the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "fhir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                               \
  do {                                          \
    fprintf(stderr, "fuzz_fhir: " __VA_ARGS__); \
    fputc('\n', stderr);                        \
    abort();                                    \
  } while (0)

static void walk(const json_t *v, const json_t *urls) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (json_string_length(v) == 0) FAIL("an empty string");
    if (strcmp(s, "\"\"") == 0) FAIL("the HL7 null written as a value");
    if (strlen(s) != json_string_length(v)) FAIL("a NUL in a FHIR string");
    return;
  }
  if (json_is_array(v)) {
    if (json_array_size(v) == 0) FAIL("an empty array");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) walk(x, urls);
    return;
  }
  if (!json_is_object(v)) return;
  const char *k;
  json_t *x;
  const json_t *ref = json_object_get(v, "reference");
  if (json_is_string(ref) && strncmp(json_string_value(ref), "urn:uuid:", 9) == 0 &&
      !json_object_get(urls, json_string_value(ref)))
    FAIL("a reference to no entry");
  json_object_foreach((json_t *)v, k, x) walk(x, urls);
}

static void check_bundle(const json_t *b) {
  json_t *urls = json_object();
  const json_t *entries = json_object_get(b, "entry");
  if (!json_is_array(entries) || json_array_size(entries) == 0) FAIL("a Bundle without entries");
  size_t i;
  json_t *e;
  json_array_foreach(entries, i, e) {
    const char *u = json_string_value(json_object_get(e, "fullUrl"));
    const json_t *r = json_object_get(e, "resource");
    if (!u || strncmp(u, "urn:uuid:", 9) != 0 || strlen(u) != 45) FAIL("a bad fullUrl");
    if (!json_is_string(json_object_get(r, "resourceType")) ||
        strcmp(json_string_value(json_object_get(r, "id")), u + 9) != 0)
      FAIL("an entry without resourceType or with an id not its fullUrl");
    if (json_object_get(urls, u)) FAIL("a fullUrl twice");
    json_object_set_new(urls, u, json_true());
  }
  walk(b, urls);
  json_decref(urls);
}

static void check_xml(const cad_buf_t *b) {
  /* every <x> has its </x>, in order */
  int depth = 0;
  for (size_t i = 0; i < b->len; i++) {
    if (b->data[i] != '<' || i + 1 >= b->len || b->data[i + 1] == '?') continue;
    depth += b->data[i + 1] == '/' ? -1 : 1;
    if (depth < 0) FAIL("xml: a closing element without its opening");
  }
  if (depth != 0) FAIL("xml: unbalanced elements (%d)", depth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const types[] = {"ADT^A01", "ADT^A08", "ADT^A28", "ORU^R01",
                                      "VXU^V04", "ORM^O01", "OML^O21", "MDM^T02"};
  if (size < 1 || size > (1u << 20)) return 0;
  /* byte 0 < 8: the message is given an MSH with that type, then the rest;
   * any other input (a corpus message) is the message itself */
  cad_buf_t in = CAD_BUF_INIT;
  if (data[0] < 8) {
    cad_buf_printf(&in, "MSH|^~\\&|A|B|C|D|20260101120000+0100||%s|C1|P|2.5.1\r", types[data[0]]);
    cad_buf_append(&in, data + 1, size - 1);
  } else {
    cad_buf_append(&in, data, size);
  }
  const char *p = in.data ? in.data : "";
  cad_fhir_system_t sys[] = {{"GH", "urn:oid:1.2.3"}, {"LAB", "http://lab.example/id"}};
  cad_fhir_opts_t o = {sys, 2, size & 1 ? "+02:00" : NULL, false};

  cad_arena_t a;
  cad_arena_init(&a, 16384, 64u << 20);
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, p, in.len, &a, NULL, NULL) == 0) {
    json_t *b1 = NULL, *b2 = NULL;
    cad_fhir_diag_t dg;
    int rc = cad_fhir_convert(&m, &o, &b1, &dg);
    if (rc && (!dg.reason[0] || b1)) FAIL("a refusal without a reason, or with a Bundle");
    if (rc == 0) {
      check_bundle(b1);
      if (cad_fhir_convert(&m, &o, &b2, &dg) != 0 || !json_equal(b1, b2))
        FAIL("two conversions differ");
      cad_buf_t out = CAD_BUF_INIT;
      if (cad_json_dump_buf(b1, false, &out) != 0) FAIL("dump failed");
      json_error_t je;
      json_t *back = json_loadb(out.data, out.len, 0, &je);
      if (!back || !json_equal(back, b1)) FAIL("the Bundle does not read back: %s", je.text);
      json_decref(back);
      cad_buf_free(&out);
    }
    json_decref(b1);
    json_decref(b2);
    cad_buf_t j = CAD_BUF_INIT, x = CAD_BUF_INIT;
    if (cad_render(CAD_FORMAT_JSON, p, in.len, NULL, &j, NULL) == 0) {
      json_error_t je;
      /* the json format keeps a NUL as \u0000, as `parse --json` does */
      json_t *back = json_loadb(j.data, j.len, JSON_ALLOW_NUL, &je);
      if (!back) FAIL("json format is not JSON: %s", je.text);
      json_decref(back);
    }
    if (cad_render(CAD_FORMAT_XML, p, in.len, NULL, &x, NULL) == 0) check_xml(&x);
    cad_buf_free(&j);
    cad_buf_free(&x);
  }
  cad_arena_free(&a);
  cad_buf_free(&in);
  return 0;
}
