/* test_hl7_api.c - the parts of parsers/hl7/hl7.h that other layers share:
 * the editing calls routes/ uses (cad_hl7_clone, cad_hl7_seg_set,
 * cad_hl7_encode, cad_hl7_serialize_span, cad_hl7_resolve_in_field), the
 * one DTM parser and the one diff by path. */
#include "hl7.h"

#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "harness.h"

static const char ORU[] =
    "MSH|^~\\&|LAB|X|EHR|Y|20240301120000||ORU^R01|C1|P|2.5\r"
    "PID|1||123^^^H||DOE^JANE\r"
    "OBX|1|NM|2345-7^Glucose||5\r"
    "OBX|2|NM|2345-7^Glucose||6\r";

static cad_hl7_path_t path(const char *s) {
  cad_hl7_path_t p;
  memset(&p, 0, sizeof p);
  if (cad_hl7_path_parse(s, strlen(s), &p, NULL, NULL) != 0) cad_test_failures++;
  return p;
}

static void ser(const cad_hl7_msg_t *m, cad_arena_t *a, cad_str_t *out) {
  if (cad_hl7_serialize_span(m, a, out) != 0) *out = (cad_str_t){"", 0};
}

TEST(clone_edits_leave_the_original) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  cad_hl7_msg_t m, c;
  REQUIRE(cad_hl7_parse(&m, ORU, sizeof ORU - 1, &a, NULL, NULL) == 0);
  REQUIRE(cad_hl7_clone(&m, &a, &c) == 0);
  cad_hl7_path_t p = path("OBX-3.1");
  /* segment 3 is OBX[2]: seg_set addresses a segment by index */
  CHECK_INT(cad_hl7_seg_set(&c, 3, &p, 1, "GLU", 3, 0), 0);
  p = path("PID-5.3");
  CHECK_INT(cad_hl7_seg_set(&c, 1, &p, 1, "A|B", 3, 0), 0); /* escaped, component added */
  p = path("PID-7");
  CHECK_INT(cad_hl7_seg_set(&c, 1, &p, 0, "1970", 4, 0), 0); /* fields added */
  p = path("PID-3[3].1");
  CHECK_INT(cad_hl7_seg_set(&c, 1, &p, 3, "R3", 2, CAD_HL7_SET_RAW), 0);
  p = path("MSH-2");
  CHECK_INT(cad_hl7_seg_set(&c, 0, &p, 0, "x", 1, 0), CAD_E_INVAL);
  CHECK_INT(cad_hl7_seg_set(&c, 9, &p, 0, "x", 1, 0), CAD_E_NOTFOUND);
  cad_str_t s;
  ser(&c, &a, &s);
  CHECK_STRN(s.p, s.len,
             "MSH|^~\\&|LAB|X|EHR|Y|20240301120000||ORU^R01|C1|P|2.5\r"
             "PID|1||123^^^H~~R3||DOE^JANE^A\\F\\B||1970\r"
             "OBX|1|NM|2345-7^Glucose||5\r"
             "OBX|2|NM|GLU^Glucose||6\r");
  ser(&m, &a, &s);
  CHECK(s.p == m.input.p && s.len == sizeof ORU - 1); /* unchanged: no copy */
  cad_arena_free(&a);
}

TEST(serialize_span_normalises_terminators) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  static const char lf[] = "MSH|^~\\&|A\nPID|1\r\nPV1|1\n";
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, lf, sizeof lf - 1, &a, NULL, NULL) == 0);
  cad_str_t s;
  ser(&m, &a, &s);
  CHECK_STRN(s.p, s.len, "MSH|^~\\&|A\rPID|1\rPV1|1\r");
  cad_arena_free(&a);
}

TEST(encode_copies_only_when_needed) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  cad_str_t in = {"plain", 5}, out;
  REQUIRE(cad_hl7_encode(&cad_hl7_default_delims, in, &a, &out) == 0);
  CHECK(out.p == in.p && out.len == 5);
  in = (cad_str_t){"a^b\r", 4};
  REQUIRE(cad_hl7_encode(&cad_hl7_default_delims, in, &a, &out) == 0);
  CHECK_STRN(out.p, out.len, "a\\S\\b\\X0D\\");
  cad_arena_free(&a);
}

TEST(resolve_in_field) {
  cad_hl7_path_t p = path("PID-3[2].1.2");
  cad_str_t f = {"a^b~c&d^e", 9}, out;
  CHECK(cad_hl7_resolve_in_field(f, &cad_hl7_default_delims, &p, 2, &out));
  CHECK_STRN(out.p, out.len, "d");
  p = path("PID-3.4");
  CHECK(!cad_hl7_resolve_in_field(f, &cad_hl7_default_delims, &p, 1, &out));
}

TEST(dtm_parse_compare_seconds) {
  cad_hl7_dtm_t a, b;
  REQUIRE(cad_hl7_dtm_parse("20240301120000.5+0100", 21, &a));
  CHECK_INT(a.prec, 7);
  CHECK_INT(a.tz_min, 60);
  REQUIRE(cad_hl7_dtm_parse("202403011100", 12, &b));
  CHECK(cad_hl7_dtm_seconds(&a) == cad_hl7_dtm_seconds(&b) + 0.5);
  b.has_tz = true; /* 11:00 UTC and 12:00+0100 are the same minute */
  CHECK_INT(cad_hl7_dtm_cmp(&a, &b), 0);
  CHECK(!cad_hl7_dtm_parse("2024-03-01", 10, &a));
  CHECK(!cad_hl7_dtm_parse("20241301", 8, &a));
  CHECK(!cad_hl7_dtm_parse("2024030112.5", 12, &a));
  REQUIRE(cad_hl7_dtm_parse("1970", 4, &a));
  CHECK(cad_hl7_dtm_seconds(&a) == 0);
}

typedef struct seen {
  char lines[8][80];
  int n;
} seen_t;

static void on_diff(void *ctx, const cad_hl7_diff_t *d) {
  seen_t *s = ctx;
  if (s->n == 8) return;
  if (d->path)
    snprintf(s->lines[s->n++], 80, "%s %.*s>%.*s", d->path, (int)d->a.len, d->a.p, (int)d->b.len,
             d->b.p);
  else
    snprintf(s->lines[s->n++], 80, "seg %u %s>%s", d->seg, d->a_seg ? d->a_seg->name : "-",
             d->b_seg ? d->b_seg->name : "-");
}

TEST(diff_by_path) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  static const char other[] =
      "MSH|^~\\&|LAB|X|EHR|Y|20240301120000||ORU^R01|C1|P|2.5\r"
      "PID|1||123&9^^^H~X||DOE^JANE\r"
      "OBX|1|NM|2345-7^Glucose||5\r"
      "OBX|2|NM|GLU^Glucose||6\r"
      "ZZZ|1\r";
  cad_hl7_msg_t m1, m2;
  REQUIRE(cad_hl7_parse(&m1, ORU, sizeof ORU - 1, &a, NULL, NULL) == 0);
  REQUIRE(cad_hl7_parse(&m2, other, sizeof other - 1, &a, NULL, NULL) == 0);
  seen_t s = {.n = 0};
  CHECK_INT((int)cad_hl7_diff(&m1, &m2, on_diff, &s), 4);
  CHECK_STR(s.lines[0], "PID-3[1].1.2 >9");
  CHECK_STR(s.lines[1], "PID-3[2] >X");
  CHECK_STR(s.lines[2], "OBX[2]-3.1 2345-7>GLU");
  CHECK_STR(s.lines[3], "seg 5 ->ZZZ");
  s.n = 0;
  CHECK_INT((int)cad_hl7_diff(&m1, &m1, on_diff, &s), 0);
  cad_arena_free(&a);
}

TEST_MAIN()
