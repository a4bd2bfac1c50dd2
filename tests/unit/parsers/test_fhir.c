/* test_fhir.c - parsers/fhir: HL7 v2 to FHIR R4, one message type at a
 * time, and the delivery formats.  Values are read from the Bundle with
 * small JSON paths ("entry[1].resource.status"). */
#include "fhir.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../../bench/bench_msgs.h"
#include "cad_error.h"
#include "harness.h"

/* The element at a path such as "entry[2].resource.code.coding[0].code". */
static json_t *at(json_t *j, const char *path) {
  char key[64];
  const char *p = path;
  while (j && *p) {
    if (*p == '[') {
      j = json_array_get(j, strtoul(p + 1, (char **)&p, 10));
      p++; /* ] */
    } else {
      size_t n = strcspn(p, ".[");
      snprintf(key, sizeof key, "%.*s", (int)n, p);
      j = json_object_get(j, key);
      p += n;
    }
    if (*p == '.') p++;
  }
  return j;
}

static const char *str(json_t *j, const char *path) {
  const char *s = json_string_value(at(j, path));
  return s ? s : "(absent)";
}

static json_t *convert(const char *msg, const cad_fhir_opts_t *o) {
  cad_buf_t b = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  int rc = cad_fhir_bundle(msg, strlen(msg), o, &b, &dg);
  if (rc) fprintf(stderr, "  conversion failed: %s\n", dg.reason);
  json_error_t je;
  json_t *j = rc ? NULL : json_loadb(b.data, b.len, 0, &je);
  /* CAD_FHIR_DUMP=FILE: every Bundle made here, one a line, for the R4
   * validator (tests/integration/test_fhir.py runs this program so) */
  const char *dump = getenv("CAD_FHIR_DUMP");
  FILE *f = dump && !rc ? fopen(dump, "a") : NULL;
  if (f) {
    fwrite(b.data, 1, b.len, f);
    fputc('\n', f);
    fclose(f);
  }
  cad_buf_free(&b);
  return j;
}

static size_t count(json_t *b, const char *type) {
  size_t n = 0, i;
  json_t *e;
  json_array_foreach(json_object_get(b, "entry"), i, e) {
    if (strcmp(str(e, "resource.resourceType"), type) == 0) n++;
  }
  return n;
}

static const cad_fhir_system_t systems[] = {{"GH", "urn:oid:1.2.3.4"},
                                            {"SSA", "http://ssa.example"}};
static const cad_fhir_opts_t opts = {systems, 2, NULL, false};

TEST(adt_identifiers_and_authorities) {
  json_t *b = convert(
      "MSH|^~\\&|A|B|C|D|20260101120000+0100||ADT^A04|C1|P|2.5.1\r"
      "PID|1||111^^^GH^MR~222^^^SSA^SS~333^^^OTHER~444^^^^^^20200101\r"
      "PV1|1|O\r",
      &opts);
  REQUIRE(b);
  CHECK_STR(str(b, "entry[0].resource.identifier[0].system"), "urn:oid:1.2.3.4");
  CHECK_STR(str(b, "entry[0].resource.identifier[0].value"), "111");
  CHECK_STR(str(b, "entry[0].resource.identifier[1].system"), "http://ssa.example");
  CHECK_STR(str(b, "entry[0].resource.identifier[1].type.coding[0].code"), "SS");
  CHECK(!at(b, "entry[0].resource.identifier[2].system"));
  CHECK_STR(str(b, "entry[0].resource.identifier[2].assigner.display"), "OTHER");
  CHECK_STR(str(b, "entry[0].resource.identifier[3].period.start"), "2020-01-01");
  CHECK_STR(str(b, "entry[1].resource.resourceType"), "Encounter");
  CHECK_STR(str(b, "entry[1].resource.status"), "in-progress");
  CHECK_STR(str(b, "entry[1].resource.class.code"), "AMB");
  CHECK_STR(str(b, "entry[1].resource.subject.reference"), str(b, "entry[0].fullUrl"));
  json_decref(b);
}

TEST(adt_every_event_and_no_pv1) {
  static const char *const events[] = {"A01", "A02", "A03", "A04", "A08",
                                       "A11", "A13", "A28", "A31"};
  static const char *const status[] = {"in-progress", "in-progress", "finished",
                                       "in-progress", "unknown",     "cancelled",
                                       "in-progress", NULL,          NULL};
  for (int i = 0; i < 9; i++) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "MSH|^~\\&|A|B|C|D|20260101||ADT^%s|C%d|P|2.5\rPID|1||9^^^GH||X^Y\r%s", events[i], i,
             status[i] ? "PV1|1|I\r" : "PV1|1|N\r");
    json_t *b = convert(msg, NULL);
    REQUIRE(b);
    CHECK_INT((int)count(b, "Encounter"), status[i] ? 1 : 0);
    if (status[i]) CHECK_STR(str(b, "entry[1].resource.status"), status[i]);
    json_decref(b);
  }
  json_t *b = convert("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|C1|P|2.5\rPID|1||9^^^GH||X^Y\r", NULL);
  REQUIRE(b);
  CHECK_INT((int)json_array_size(json_object_get(b, "entry")), 1);
  json_decref(b);
}

TEST(null_and_empty_leave_elements_out) {
  json_t *b = convert(
      "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|C1|P|2.5\r"
      "PID|1||9^^^GH||\"\"^ANN^\"\"||\"\"|\"\"|||\"\"^^\"\"\r",
      NULL);
  REQUIRE(b);
  CHECK(!at(b, "entry[0].resource.name[0].family"));
  CHECK_STR(str(b, "entry[0].resource.name[0].given[0]"), "ANN");
  CHECK(!at(b, "entry[0].resource.name[0].given[1]"));
  CHECK(!at(b, "entry[0].resource.birthDate"));
  CHECK(!at(b, "entry[0].resource.gender"));
  CHECK(!at(b, "entry[0].resource.address"));
  json_decref(b);
}

TEST(oru_groups_units_escapes) {
  json_t *b = convert(
      "MSH|^~\\&|A|B|C|D|20260101120000-0500||ORU^R01|C1|P|2.5.1\r"
      "PID|1||9^^^GH||X^Y\r"
      "OBR|1|||1^Panel A^LN|||202601011100\r"
      "OBX|1|NM|2^Na^LN||140|mmol/L^^UCUM|135-145|N|||F\r"
      "NTE|1||note \\E\\ one\r"
      "OBX|2|NM|3^K^LN||4.5|meq/L^^L|||||F\r"
      "OBR|2|||4^Panel B^LN\r"
      "OBX|1|ST|5^Text^LN||a\\S\\b\\T\\c\\R\\d||||||P\r"
      "OBX|2|SN|6^R^LN||<=^10|||||F\r"
      "OBX|3|CE|7^C^LN||POS^Positive^HL70078||||||F\r",
      NULL);
  REQUIRE(b);
  CHECK_INT((int)count(b, "DiagnosticReport"), 2);
  CHECK_INT((int)count(b, "Observation"), 5);
  CHECK_STR(str(b, "entry[1].resource.result[0].reference"), str(b, "entry[2].fullUrl"));
  CHECK_STR(str(b, "entry[1].resource.result[1].reference"), str(b, "entry[3].fullUrl"));
  CHECK_STR(str(b, "entry[4].resource.result[0].reference"), str(b, "entry[5].fullUrl"));
  CHECK(!at(b, "entry[1].resource.result[2]"));
  CHECK(json_integer_value(at(b, "entry[2].resource.valueQuantity.value")) == 140);
  CHECK_STR(str(b, "entry[2].resource.valueQuantity.system"), "http://unitsofmeasure.org");
  CHECK_STR(str(b, "entry[2].resource.valueQuantity.code"), "mmol/L");
  CHECK_STR(str(b, "entry[2].resource.note[0].text"), "note \\ one");
  CHECK_STR(str(b, "entry[2].resource.effectiveDateTime"), "2026-01-01T11:00:00-05:00");
  /* a local unit system: the unit's text only (no code without a system) */
  CHECK_STR(str(b, "entry[3].resource.valueQuantity.unit"), "meq/L");
  CHECK(!at(b, "entry[3].resource.valueQuantity.code"));
  CHECK_STR(str(b, "entry[5].resource.valueString"), "a^b&c~d");
  CHECK_STR(str(b, "entry[5].resource.status"), "preliminary");
  CHECK_STR(str(b, "entry[6].resource.valueQuantity.comparator"), "<=");
  CHECK_STR(str(b, "entry[7].resource.valueCodeableConcept.coding[0].system"),
            "http://terminology.hl7.org/CodeSystem/v2-0078");
  json_decref(b);
}

/* A decimal is printed with 15 significant digits, counted from the first
 * digit that is not 0: a longer one rounded, one of 15 exactly as written
 * (however many zeros lead it). */
TEST(decimals_carry_15_significant_digits) {
  json_t *b = convert(
      "MSH|^~\\&|A|B|C|D|20260101120000||ORU^R01|C1|P|2.5.1\r"
      "PID|1||9^^^GH||X^Y\r"
      "OBR|1|||1^Panel^LN\r"
      "OBX|1|NM|2^A^LN||1.23456789012345678||||||F\r"
      "OBX|2|NM|3^B^LN||0.000123456789012345||||||F\r"
      "OBX|3|NM|4^C^LN||-20140630120030.1||||||F\r",
      NULL);
  REQUIRE(b);
  CHECK(json_real_value(at(b, "entry[2].resource.valueQuantity.value")) == 1.23456789012346);
  CHECK(json_real_value(at(b, "entry[3].resource.valueQuantity.value")) == 0.000123456789012345);
  CHECK(json_real_value(at(b, "entry[4].resource.valueQuantity.value")) == -20140630120030.1);
  json_decref(b);
}

TEST(dates_precision_and_zone) {
  static const struct {
    const char *dtm, *tz, *want;
  } cases[] = {
      {"2026", NULL, "2026"},
      {"202603", NULL, "2026-03"},
      {"20260315", NULL, "2026-03-15"},
      {"202603151230", NULL, "2026-03-15"}, /* no zone anywhere: the date */
      {"202603151230", "+02:00", "2026-03-15T12:30:00+02:00"},
      {"20260315123045.12-0330", NULL, "2026-03-15T12:30:45.12-03:30"},
      {"20260315123045+0000", "+05:00", "2026-03-15T12:30:45Z"},
      {"2026031512304", NULL, "(absent)"}, /* not a DTM */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C1|P|2.5\rPID|1||9\rOBR|1|||1^X^LN|||%s\r",
             cases[i].dtm);
    cad_fhir_opts_t o = {NULL, 0, cases[i].tz, false};
    json_t *b = convert(msg, &o);
    REQUIRE(b);
    CHECK_STR(str(b, "entry[1].resource.effectiveDateTime"), cases[i].want);
    json_decref(b);
  }
}

TEST(vxu_orders_mdm) {
  json_t *b = convert(
      "MSH|^~\\&|A|B|C|D|20260101||VXU^V04|C1|P|2.5.1\rPID|1||9\r"
      "RXA|0|1|20260101||08^HepB^CVX|999||||||||||||||CP|A\rRXR|IM^^HL70162\r",
      NULL);
  REQUIRE(b);
  CHECK_STR(str(b, "entry[1].resource.status"), "completed");
  CHECK_STR(str(b, "entry[1].resource.vaccineCode.coding[0].system"),
            "http://hl7.org/fhir/sid/cvx");
  CHECK(!at(b, "entry[1].resource.doseQuantity"));
  CHECK_STR(str(b, "entry[1].resource.route.coding[0].code"), "IM");
  json_decref(b);
  b = convert(
      "MSH|^~\\&|A|B|C|D|20260101||ORM^O01|C1|P|2.3\rPID|1||9\r"
      "ORC|NW|P1\rOBR|1|P1||1^X^LN\rORC|DC|P2\rORC|HD|P3\rOBR|1|P3||2^Y^LN\r",
      NULL);
  REQUIRE(b);
  CHECK_INT((int)count(b, "ServiceRequest"), 3);
  CHECK_STR(str(b, "entry[1].resource.status"), "active");
  CHECK_STR(str(b, "entry[2].resource.status"), "revoked");
  CHECK_STR(str(b, "entry[3].resource.status"), "on-hold");
  CHECK_STR(str(b, "entry[3].resource.code.coding[0].code"), "2");
  json_decref(b);
  b = convert(
      "MSH|^~\\&|A|B|C|D|20260101||MDM^T02|C1|P|2.5\rPID|1||9\r"
      "TXA|1|CN||||||||||D1\rOBX|1|TX|1^X^LN||hi||||||F\r",
      NULL);
  REQUIRE(b);
  CHECK_STR(str(b, "entry[1].resource.content[0].attachment.data"), "aGk=");
  CHECK_STR(str(b, "entry[1].resource.masterIdentifier.value"), "D1");
  json_decref(b);
}

TEST(refusals) {
  cad_buf_t out = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  const char *m = "MSH|^~\\&|A|B|C|D|20260101||ADT^A40|C1|P|2.5\rPID|1||SECRET\r";
  CHECK_INT(cad_fhir_bundle(m, strlen(m), NULL, &out, &dg), CAD_E_INVAL);
  CHECK_STR(dg.reason, "unsupported message type ADT^A40");
  m = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|C1|P|2.5\rEVN|A01\r";
  CHECK_INT(cad_fhir_bundle(m, strlen(m), NULL, &out, &dg), CAD_E_INVAL);
  CHECK(strstr(dg.reason, "no PID") != NULL);
  CHECK_INT(cad_fhir_bundle("garbage", 7, NULL, &out, &dg) < 0, 1);
  CHECK_INT((int)out.len, 0);
  cad_buf_free(&out);
}

TEST(entries_bounded) {
  /* a hostile message with more OBX than a Bundle may hold is refused */
  cad_buf_t in = CAD_BUF_INIT, out = CAD_BUF_INIT;
  cad_buf_puts(&in, "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C1|P|2.5\rPID|1||9\rOBR|1\r");
  for (int i = 0; i < CAD_FHIR_MAX_ENTRIES; i++) cad_buf_puts(&in, "OBX|1|NM|a||1\r");
  cad_fhir_diag_t dg;
  CHECK_INT(cad_fhir_bundle(in.data, in.len, NULL, &out, &dg), CAD_E_TOOBIG);
  CHECK(strstr(dg.reason, "more resources") != NULL);
  CHECK_INT((int)out.len, 0);
  /* one fewer fits */
  in.len -= strlen("OBX|1|NM|a||1\r") * 3;
  CHECK_INT(cad_fhir_bundle(in.data, in.len, NULL, &out, &dg), 0);
  cad_buf_free(&in);
  cad_buf_free(&out);
}

TEST(long_names_are_cut_whole) {
  /* an XCN / PL longer than the display buffer: cut on a character */
  cad_buf_t in = CAD_BUF_INIT;
  cad_buf_puts(&in, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|C1|P|2.5\rPID|1||9\rPV1|1|I|");
  for (int i = 0; i < 300; i++) cad_buf_puts(&in, "\xc3\xa9");
  cad_buf_puts(&in, "|||||1^");
  for (int i = 0; i < 300; i++) cad_buf_puts(&in, "\xc3\xa9");
  cad_buf_puts(&in, "^");
  for (int i = 0; i < 700; i++) cad_buf_puts(&in, "G");
  cad_buf_puts(&in, "^^^");
  for (int i = 0; i < 700; i++) cad_buf_puts(&in, "P");
  cad_buf_puts(&in, "\r");
  json_t *b = convert(cad_buf_cstr(&in), NULL);
  REQUIRE(b);
  const char *loc = str(b, "entry[1].resource.location[0].location.display");
  CHECK(strlen(loc) == 510); /* 255 whole characters of 2 bytes */
  const char *doc = str(b, "entry[1].resource.participant[0].individual.display");
  CHECK(strlen(doc) == 511 && doc[0] == 'P');
  json_decref(b);
  cad_buf_free(&in);
}

TEST(deterministic_uuid) {
  const char *parts[2] = {"Observation", "MSG1"};
  size_t lens[2] = {11, 4};
  char a[37], b[37];
  cad__fhir_uuid(parts, lens, 2, a);
  cad__fhir_uuid(parts, lens, 2, b);
  CHECK_STR(a, b);
  CHECK_INT((int)strlen(a), 36);
  CHECK(a[14] == '8'); /* version 8 */
  CHECK(strchr("89ab", a[19]) != NULL);
  const char *other[2] = {"Observatio", "nMSG1"};
  cad__fhir_uuid(other, lens, 2, b);
  CHECK(strcmp(a, b) != 0);
}

TEST(formats) {
  cad_format_t f;
  CHECK_INT(cad_format_parse("fhir", &f), 0);
  CHECK_INT(f, CAD_FORMAT_FHIR);
  CHECK_INT(cad_format_parse("FHIR", &f), CAD_E_INVAL);
  CHECK_STR(cad_format_content_type(CAD_FORMAT_FHIR), "application/fhir+json");
  CHECK_STR(cad_format_content_type(CAD_FORMAT_ER7), "x-application/hl7-v2+er7");
  const char *m = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|C1|P|2.5\rPID|1||9^^^GH~8||\"\"\r";
  cad_buf_t out = CAD_BUF_INIT;
  CHECK_INT(cad_render(CAD_FORMAT_XML, m, strlen(m), NULL, &out, NULL), 0);
  REQUIRE(cad_buf_cstr(&out));
  CHECK(strstr(out.data, "<ADT_A01 xmlns=\"urn:hl7-org:v2xml\">") != NULL);
  CHECK(
      strstr(
          out.data,
          "<PID.3><CX.1>9</CX.1><CX.4><HD.1>GH</HD.1></CX.4></PID.3><PID.3><CX.1>8</CX.1></PID.3>") !=
      NULL);
  CHECK(strstr(out.data, "<MSH.2>^~\\&amp;</MSH.2>") != NULL);
  out.len = 0;
  CHECK_INT(cad_render(CAD_FORMAT_JSON, m, strlen(m), NULL, &out, NULL), 0);
  json_error_t je;
  json_t *j = json_loadb(out.data, out.len, 0, &je);
  REQUIRE(j);
  CHECK_STR(str(j, "segments[1].fields[1].children[0].path"), "PID-3[1]");
  CHECK(json_is_true(at(j, "segments[1].fields[2].null")));
  json_decref(j);
  out.len = 0;
  CHECK_INT(cad_render(CAD_FORMAT_ER7, m, strlen(m), NULL, &out, NULL), 0);
  CHECK_STRN(out.data, out.len, m);
  cad_buf_free(&out);
}

/* ---- hostile sizes: linear time ---------------------------------------------
 *
 * A field of a million empty repetitions, tens of thousands of segments, the
 * same patient thousands of times: every format reads each piece once (no
 * count of the repetitions and a scan from the start for each one, no count
 * of a segment's occurrences by a scan of those before it, no scan of every
 * entry for a repeated id), so each conversion below takes well under a
 * second; the quadratic reading took hours for the first, seconds for the
 * others.  The bound is loose (a busy machine, a sanitizer build). */

#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_BOUND_S 20.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_BOUND_S 20.0
#endif
#endif
#ifndef HOSTILE_BOUND_S
#define HOSTILE_BOUND_S 10.0
#endif

/* The thread's CPU time, not the wall clock: other tests running beside
 * this one on a 2-core machine must not make it fail (it did once). */
static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Render msg in format f; the rendering's CPU time, its rc in *rc. */
static double timed_render(cad_format_t f, const cad_buf_t *msg, int *rc, size_t *outlen) {
  cad_buf_t out = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  double t0 = mono_s();
  *rc = cad_render(f, msg->data, msg->len, &opts, &out, &dg);
  double t = mono_s() - t0;
  if (*rc) fprintf(stderr, "  render %d: %s\n", (int)f, dg.reason);
  *outlen = out.len;
  cad_buf_free(&out);
  return t;
}

static void put_many(cad_buf_t *b, const char *s, size_t times) {
  size_t n = strlen(s);
  REQUIRE(cad_buf_reserve(b, n * times) == 0);
  for (size_t i = 0; i < times; i++) cad_buf_append(b, s, n);
}

TEST(hostile_sizes_take_linear_time) {
  static const cad_format_t formats[3] = {CAD_FORMAT_FHIR, CAD_FORMAT_JSON, CAD_FORMAT_XML};
  static const char *const fnames[3] = {"fhir", "json", "xml"};
  int rc;
  size_t len;
  /* 1: a million empty repetitions in PID-3, PID-13, OBX-5 (ST) and OBX-8,
   * and a million empty components in PID-5 */
  cad_buf_t m = CAD_BUF_INIT;
  cad_buf_puts(&m, "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C1|P|2.5\rPID|1||9^^^GH");
  put_many(&m, "~", 1000000);
  cad_buf_puts(&m, "||DOE^JANE");
  put_many(&m, "^", 1000000);
  cad_buf_puts(&m, "||||||||^PRN^PH^^1^217^5551234");
  put_many(&m, "~", 1000000);
  cad_buf_puts(&m, "\rOBR|1\rOBX|1|ST|1^a^LN||text");
  put_many(&m, "~", 1000000);
  cad_buf_puts(&m, "|||H");
  put_many(&m, "~", 1000000);
  cad_buf_puts(&m, "\r");
  for (int k = 0; k < 3; k++) {
    double t = timed_render(formats[k], &m, &rc, &len);
    fprintf(stderr, "  %s, 10^6 repetitions x 4: %.3f s, %zu bytes out\n", fnames[k], t, len);
    CHECK_INT(rc, 0);
    CHECK(t < HOSTILE_BOUND_S);
  }
  /* the Bundle holds what the values said, once each */
  cad_buf_t out = CAD_BUF_INIT;
  REQUIRE(cad_render(CAD_FORMAT_FHIR, m.data, m.len, &opts, &out, NULL) == 0);
  json_error_t je;
  json_t *b = json_loadb(out.data, out.len, 0, &je);
  REQUIRE(b);
  CHECK_INT((int)json_array_size(at(b, "entry[0].resource.identifier")), 1);
  CHECK_INT((int)json_array_size(at(b, "entry[0].resource.telecom")), 1);
  CHECK_STR(str(b, "entry[2].resource.valueString"), "text");
  CHECK_INT((int)json_array_size(at(b, "entry[2].resource.interpretation")), 1);
  json_decref(b);
  /* 2: 60,000 segments: NTE after an OBX (notes), and Z segments (the
   * json and xml formats) */
  m.len = 0;
  cad_buf_puts(&m,
               "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C1|P|2.5\rPID|1||9^^^GH\rOBR|1\r"
               "OBX|1|NM|1^a^LN||5\r");
  put_many(&m, "NTE|1||n\r", 40000);
  put_many(&m, "ZXA|1|a~b^c&d\r", 20000);
  for (int k = 0; k < 3; k++) {
    double t = timed_render(formats[k], &m, &rc, &len);
    fprintf(stderr, "  %s, 60,000 segments: %.3f s, %zu bytes out\n", fnames[k], t, len);
    CHECK_INT(rc, 0);
    CHECK(t < HOSTILE_BOUND_S);
  }
  out.len = 0;
  REQUIRE(cad_render(CAD_FORMAT_JSON, m.data, m.len, &opts, &out, NULL) == 0);
  b = json_loadb(out.data, out.len, 0, &je);
  REQUIRE(b);
  CHECK_STR(str(b, "segments[40003].path"), "NTE[40000]");
  CHECK_STR(str(b, "segments[40004].path"), "ZXA");
  CHECK_STR(str(b, "segments[60003].path"), "ZXA[20000]");
  CHECK_STR(str(b, "segments[60003].fields[1].children[1].children[1].path"), "ZXA[20000]-2[2].2");
  json_decref(b);
  out.len = 0;
  REQUIRE(cad_render(CAD_FORMAT_FHIR, m.data, m.len, &opts, &out, NULL) == 0);
  b = json_loadb(out.data, out.len, 0, &je);
  REQUIRE(b);
  CHECK_INT((int)json_array_size(at(b, "entry[2].resource.note")), 40000);
  json_decref(b);
  /* 3: the same patient 9,000 times (each but the first gets an id of its
   * own, found among the ids so far without a scan of every entry) */
  m.len = 0;
  cad_buf_puts(&m, "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|C1|P|2.5\r");
  put_many(&m, "PID|1||MRN1^^^GH||DOE^JANE\r", 9000);
  double t = timed_render(CAD_FORMAT_FHIR, &m, &rc, &len);
  fprintf(stderr, "  fhir, 9,000 PID of one patient: %.3f s, %zu bytes out\n", t, len);
  CHECK_INT(rc, 0);
  CHECK(t < HOSTILE_BOUND_S);
  out.len = 0;
  REQUIRE(cad_render(CAD_FORMAT_FHIR, m.data, m.len, &opts, &out, NULL) == 0);
  b = json_loadb(out.data, out.len, 0, &je);
  REQUIRE(b);
  CHECK_INT((int)json_array_size(at(b, "entry")), 9000);
  json_t *seen = json_object();
  size_t i;
  json_t *e;
  json_array_foreach(at(b, "entry"), i, e)
      json_object_set_new(seen, str(e, "fullUrl"), json_true());
  CHECK_INT((int)json_object_size(seen), 9000); /* every id its own */
  json_decref(seen);
  json_decref(b);
  cad_buf_free(&out);
  cad_buf_free(&m);
}

/* ---- pinned outputs ---------------------------------------------------------
 *
 * The exact bytes of every format for the benchmark ORU^R01 (bench_msgs.h)
 * and of the Bundle of each message of tests/fixtures/fhir, kept in
 * tests/fixtures/fhir/pinned/: any change to the output, even of white
 * space or key order, shows here.  CAD_PIN_WRITE=1 rewrites the files (only
 * after checking that the change is meant). */

static const cad_fhir_system_t bench_systems[] = {{"GH", "urn:oid:2.16.840.1.113883.3.72"}};

static void pin_check(const char *name, cad_format_t f, const char *msg, size_t len,
                      const cad_fhir_opts_t *o) {
  const char *fx = getenv("CAD_FIXTURES");
  char path[4096];
  snprintf(path, sizeof path, "%s/fhir/pinned/%s", fx && *fx ? fx : "tests/fixtures", name);
  cad_buf_t got = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  CHECK_INT(cad_render(f, msg, len, o, &got, &dg), 0);
  if (getenv("CAD_PIN_WRITE")) {
    FILE *w = fopen(path, "wb");
    REQUIRE(w);
    fwrite(got.data, 1, got.len, w);
    fclose(w);
  }
  FILE *r = fopen(path, "rb");
  if (!r) fprintf(stderr, "  missing %s\n", path);
  REQUIRE(r);
  cad_buf_t want = CAD_BUF_INIT;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, r)) > 0) cad_buf_append(&want, chunk, n);
  fclose(r);
  size_t at = 0;
  while (at < got.len && at < want.len && got.data[at] == want.data[at]) at++;
  if (got.len != want.len || at != got.len)
    fprintf(stderr, "  %s: differs at byte %zu (got %zu bytes, want %zu)\n", name, at, got.len,
            want.len);
  CHECK(got.len == want.len && at == got.len);
  cad_buf_free(&got);
  cad_buf_free(&want);
}

TEST(pinned_benchmark_message) {
  char msg[4096];
  size_t len = bench_oru_r01(msg, sizeof msg);
  cad_fhir_opts_t o = {bench_systems, 1, NULL, false};
  pin_check("bench_oru_r01.fhir.json", CAD_FORMAT_FHIR, msg, len, &o);
  pin_check("bench_oru_r01.json", CAD_FORMAT_JSON, msg, len, &o);
  pin_check("bench_oru_r01.xml", CAD_FORMAT_XML, msg, len, &o);
  o.pretty = true;
  pin_check("bench_oru_r01.pretty.fhir.json", CAD_FORMAT_FHIR, msg, len, &o);
  pin_check("bench_oru_r01.pretty.json", CAD_FORMAT_JSON, msg, len, &o);
}

TEST(pinned_fixture_bundles) {
  static const char *const names[] = {"adt_a01", "adt_a03", "adt_a08_nopv1", "adt_a28", "mdm_t02",
                                      "oml_o21", "orm_o01", "oru_r01",       "vxu_v04"};
  const char *fx = getenv("CAD_FIXTURES");
  cad_fhir_opts_t o = {systems, 2, "-05:00", false};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char path[4096], out[64];
    snprintf(path, sizeof path, "%s/fhir/%s.hl7", fx && *fx ? fx : "tests/fixtures", names[i]);
    FILE *r = fopen(path, "rb");
    REQUIRE(r);
    char msg[8192];
    size_t len = fread(msg, 1, sizeof msg, r);
    fclose(r);
    snprintf(out, sizeof out, "%s.fhir.json", names[i]);
    pin_check(out, CAD_FORMAT_FHIR, msg, len, &o);
  }
}

TEST_MAIN()
