/* test_routes.c - routes: compile errors with positions, every filter
 * operator, every transform, fan-out and dispositions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "cad_error.h"
#include "harness.h"
#include "hl7.h"
#include "routes.h"
#include "routes_int.h"
#include "yaml_doc.h"

static const char *const dests[] = {"a", "b", "c"};

typedef struct fx {
  cad_yaml_doc_t *doc;
  cad_tables_t *tables;
  cad_routes_t *r;
  cad_buf_t err;
  int rc;
  cad_arena_t arena;
  cad_route_result_t res;
  char out[8192];
} fx_t;

/* Compile a document with optional top-level `tables:` and one `channel:`. */
static int fx_compile(fx_t *f, const char *yaml) {
  memset(f, 0, sizeof *f);
  cad_arena_init(&f->arena, 8192, 0);
  char perr[256];
  f->rc = cad_yaml_parse("t.yaml", yaml, strlen(yaml), NULL, &f->doc, perr, sizeof perr);
  if (f->rc) {
    fprintf(stderr, "  yaml: %s\n", perr);
    return f->rc;
  }
  f->rc = cad_tables_load(cad_yaml_get(f->doc->root, "tables"), "/tmp", &f->tables, &f->err);
  if (f->rc) return f->rc;
  f->rc = cad_routes_compile(cad_yaml_get(f->doc->root, "channel"), f->tables, dests, 3, &f->r,
                             &f->err);
  return f->rc;
}

static void fx_free(fx_t *f) {
  cad_routes_free(f->r);
  cad_tables_free(f->tables);
  cad_yaml_free(f->doc);
  cad_buf_free(&f->err);
  cad_arena_free(&f->arena);
}

static const char *fx_errors(fx_t *f) {
  const char *s = cad_buf_cstr(&f->err);
  return s ? s : "";
}

/* Route `msg` (\n becomes \r); returns the disposition. */
static int fx_eval(fx_t *f, const char *msg) {
  static char buf[8192];
  size_t n = strlen(msg);
  for (size_t i = 0; i <= n; i++) buf[i] = msg[i] == '\n' ? '\r' : msg[i];
  cad_arena_reset(&f->arena);
  int rc = cad_routes_eval(f->r, buf, n, NULL, &f->arena, &f->res);
  if (rc) return rc;
  return (int)f->res.disposition;
}

/* The k-th output for destination d as text with \n for \r, or NULL. */
static const char *fx_out(fx_t *f, size_t d, int k) {
  for (size_t i = 0; i < f->res.nouts; i++) {
    if (f->res.outs[i].dest != d || k-- > 0) continue;
    cad_str_t b = f->res.outs[i].bytes;
    size_t n = b.len < sizeof f->out - 1 ? b.len : sizeof f->out - 1;
    for (size_t j = 0; j < n; j++) f->out[j] = b.p[j] == '\r' ? '\n' : b.p[j];
    f->out[n] = 0;
    return f->out;
  }
  return NULL;
}

/* The one segment `seg` (e.g. "PID") of output 0 to destination a, or "". */
static const char *seg_of(fx_t *f, const char *seg) {
  static char line[2048];
  const char *o = fx_out(f, 0, 0);
  line[0] = 0;
  if (!o) return "(no output)";
  for (const char *p = o; *p;) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n >= 3 && memcmp(p, seg, 3) == 0) {
      snprintf(line, sizeof line, "%.*s", (int)n, p);
      return line;
    }
    p += n + (e ? 1 : 0);
  }
  return line;
}

static bool has_error(fx_t *f, const char *needle) {
  if (strstr(fx_errors(f), needle)) return true;
  fprintf(stderr, "  errors were:\n%s  (looked for: %s)\n", fx_errors(f), needle);
  return false;
}

#define ORU                                                         \
  "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305143000||ORU^R01|C1|P|2.5.1\n" \
  "PID|1||123^^^HOSP^MR~QA7^^^TEST^PT||Doe^Jane||19800412|F\n"      \
  "OBR|1|O1|F1|BMP|||20240305121045\n"                              \
  "OBX|1|NM|GLU^Glucose^L||98|mg/dL|||||F\n"                        \
  "NTE|1||first note\n"                                             \
  "OBX|2|NM|K^Potassium^L||4.1|mmol/L|||||D\n"                      \
  "OBX|3|ST|XYZ^Other^L||  text  ||||||F\n"                         \
  "NTE|1||second note\n"

/* A condition test: compile `when`, route ORU, expect delivered or not. */
static int when_holds(const char *when) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml, "channel:\n  routes:\n    - when: %s\n      to: a\n", when);
  fx_t f;
  if (fx_compile(&f, yaml) != 0) {
    fprintf(stderr, "  compile failed for %s:\n%s", when, fx_errors(&f));
    fx_free(&f);
    return -1;
  }
  int d = fx_eval(&f, ORU);
  fx_free(&f);
  return d == CAD_ROUTE_DELIVER ? 1 : d == CAD_ROUTE_FILTERED ? 0 : -2;
}

/* ---- filters ------------------------------------------------------------ */

TEST(filter_equals_not_equals) {
  CHECK_INT(when_holds("{ path: MSH-9.1, equals: ORU }"), 1);
  CHECK_INT(when_holds("{ path: MSH-9.1, equals: ADT }"), 0);
  CHECK_INT(when_holds("{ path: MSH-9, equals: \"ORU^R01\" }"), 1); /* raw, with structure */
  CHECK_INT(when_holds("{ path: MSH-9.1, not_equals: ADT }"), 1);
  CHECK_INT(when_holds("{ path: MSH-9.1, not_equals: ORU }"), 0);
  CHECK_INT(when_holds("{ path: ZZZ-1, equals: \"\" }"), 1); /* absent reads as empty */
  CHECK_INT(when_holds("{ path: MSH-1, equals: \"|\" }"), 1);
}

TEST(filter_in_prefix) {
  CHECK_INT(when_holds("{ path: OBX-11, in: [F, C] }"), 1);
  CHECK_INT(when_holds("{ path: \"OBX[2]-11\", in: [F, C] }"), 0);
  CHECK_INT(when_holds("{ path: MSH-12, prefix: \"2.5\" }"), 1);
  CHECK_INT(when_holds("{ path: MSH-12, prefix: \"2.6\" }"), 0);
}

TEST(filter_in_table) {
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "tables:\n  codes: { values: { GLU: x, NA: y } }\n"
                     "channel:\n  routes:\n"
                     "    - when: { path: \"OBX[*]-3.1\", in_table: codes }\n      to: a\n"
                     "    - when: { path: \"OBX[*]-3.1\", all: { in_table: codes } }\n"
                     "      to: b\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_DELIVER);
  CHECK(fx_out(&f, 0, 0) != NULL);
  fx_free(&f);
  REQUIRE(fx_compile(&f,
                     "tables:\n  codes: { values: { NA: y } }\n"
                     "channel:\n  routes:\n"
                     "    - when: { path: \"OBX[*]-3.1\", in_table: codes }\n      to: a\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_FILTERED);
  fx_free(&f);
}

TEST(filter_matches_regex) {
  CHECK_INT(when_holds("{ path: MSH-10, matches: \"^C[0-9]+$\" }"), 1);
  CHECK_INT(when_holds("{ path: MSH-10, matches: \"^X\" }"), 0);
  CHECK_INT(when_holds("{ path: \"PID-3[*].4\", matches: \"^TE\" }"), 1);
  fx_t f;
  CHECK_INT(fx_compile(&f,
                       "channel:\n  routes:\n    - when: { path: MSH-10, matches: \"a(b\" }\n"
                       "      to: a\n"),
            CAD_E_CONFIG);
  CHECK(has_error(&f, "t.yaml:3:38: invalid regular expression"));
  fx_free(&f);
}

TEST(filter_exists_empty) {
  CHECK_INT(when_holds("{ path: PID-5, exists: true }"), 1);
  CHECK_INT(when_holds("{ path: PID-4, exists: true }"), 0);   /* empty field */
  CHECK_INT(when_holds("{ path: PID-40, exists: false }"), 1); /* beyond the last field */
  CHECK_INT(when_holds("{ path: ZZZ-1, exists: false }"), 1);  /* missing segment */
  CHECK_INT(when_holds("{ path: ZZZ-1, empty: true }"), 1);
  CHECK_INT(when_holds("{ path: PID-4, empty: true }"), 1);
  CHECK_INT(when_holds("{ path: PID-5, empty: true }"), 0);
  CHECK_INT(when_holds("{ path: PID-5, empty: false }"), 1);
  /* The HL7 null "" counts as empty. */
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes:\n    - when: { path: PID-8, empty: true }\n"
                     "      to: a\n") == 0);
  CHECK_INT(fx_eval(&f, "MSH|^~\\&|A|B\nPID|1||1||X||1|\"\"\n"), CAD_ROUTE_DELIVER);
  CHECK_INT(fx_eval(&f, "MSH|^~\\&|A|B\nPID|1||1||X||1|F\n"), CAD_ROUTE_FILTERED);
  fx_free(&f);
}

TEST(filter_numeric) {
  CHECK_INT(when_holds("{ path: OBX-5, lt: 100 }"), 1);
  CHECK_INT(when_holds("{ path: OBX-5, lt: 98 }"), 0);
  CHECK_INT(when_holds("{ path: OBX-5, le: 98 }"), 1);
  CHECK_INT(when_holds("{ path: OBX-5, gt: 97.5 }"), 1);
  CHECK_INT(when_holds("{ path: OBX-5, ge: 98.01 }"), 0);
  CHECK_INT(when_holds("{ path: OBX-5, ge: 90, lt: 99 }"), 1);  /* both on the same value */
  CHECK_INT(when_holds("{ path: \"OBX[3]-5\", lt: 1000 }"), 0); /* text is not a number */
  CHECK_INT(when_holds("{ path: \"OBX[*]-5\", all: { gt: 1 } }"), 0);
  CHECK_INT(when_holds("{ path: \"OBX[*]-5\", any: { lt: 5 } }"), 1); /* 4.1 */
  fx_t f;
  CHECK_INT(fx_compile(&f,
                       "channel:\n  routes:\n    - when: { path: OBX-5, lt: ten }\n"
                       "      to: a\n"),
            CAD_E_CONFIG);
  CHECK(has_error(&f, "t.yaml:3:32: 'lt' needs a decimal number, not 'ten'"));
  fx_free(&f);
}

TEST(filter_dates) {
  CHECK_INT(when_holds("{ path: OBR-7, after: \"20240305\" }"), 0); /* same day: equal */
  CHECK_INT(when_holds("{ path: OBR-7, after: \"202403051200\" }"), 1);
  CHECK_INT(when_holds("{ path: OBR-7, before: \"2025\" }"), 1);
  CHECK_INT(when_holds("{ path: OBR-7, before: \"20240305121045.5\" }"), 0);
  CHECK_INT(when_holds("{ path: PID-7, before: \"19800413\" }"), 1);
  CHECK_INT(when_holds("{ path: PID-5, before: \"2030\" }"), 0); /* not a date */
  /* Time zones: 12:00+0100 is 11:00 UTC, before 11:30+0000. */
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes:\n"
                     "    - when: { path: MSH-7, before: \"202401011130+0000\" }\n"
                     "      to: a\n") == 0);
  CHECK_INT(fx_eval(&f, "MSH|^~\\&|A|B|C|D|202401011200+0100\n"), CAD_ROUTE_DELIVER);
  CHECK_INT(fx_eval(&f, "MSH|^~\\&|A|B|C|D|202401011200+0000\n"), CAD_ROUTE_FILTERED);
  CHECK_INT(fx_eval(&f, "MSH|^~\\&|A|B|C|D|202401010000-0100\n"), CAD_ROUTE_DELIVER);
  fx_free(&f);
  CHECK_INT(fx_compile(&f,
                       "channel:\n  routes:\n    - when: { path: MSH-7, before: 2024-01-01 }\n"
                       "      to: a\n"),
            CAD_E_CONFIG);
  CHECK(has_error(&f, "t.yaml:3:36: 'before' needs an HL7 date/time"));
  fx_free(&f);
}

TEST(filter_any_all_repetitions_and_segments) {
  CHECK_INT(when_holds("{ path: \"PID-3[*].4\", any: { equals: TEST } }"), 1);
  CHECK_INT(when_holds("{ path: \"PID-3[*].4\", all: { equals: TEST } }"), 0);
  CHECK_INT(when_holds("{ path: \"PID-3[*].4\", equals: HOSP }"), 1); /* any by default */
  CHECK_INT(when_holds("{ path: \"OBX[*]-11\", all: { in: [F, D] } }"), 1);
  CHECK_INT(when_holds("{ path: \"OBX[*]-11\", all: { equals: F } }"), 0);
  CHECK_INT(when_holds("{ path: \"NTE[*]-3\", any: { equals: second note } }"), 1);
  /* A missing segment is one absent value, for any and all alike. */
  CHECK_INT(when_holds("{ path: \"ZZZ[*]-1\", all: { equals: X } }"), 0);
  CHECK_INT(when_holds("{ path: \"ZZZ[*]-1\", all: { exists: false } }"), 1);
}

TEST(filter_combinators) {
  CHECK_INT(when_holds("{ all: [ { path: MSH-9.1, equals: ORU }, { path: PID-8, equals: F } ] }"),
            1);
  CHECK_INT(when_holds("{ all: [ { path: MSH-9.1, equals: ORU }, { path: PID-8, equals: M } ] }"),
            0);
  CHECK_INT(when_holds("{ any: [ { path: PID-8, equals: M }, { path: PID-8, equals: F } ] }"), 1);
  CHECK_INT(when_holds("{ not: { path: PID-8, equals: F } }"), 0);
  CHECK_INT(when_holds("{ not: { not: { any: [ { all: [ { path: PID-8, equals: F } ] } ] } } }"),
            1);
  CHECK_INT(when_holds("[ { path: MSH-9.1, equals: ORU }, { path: PID-8, equals: M } ]"), 0);
  /* Depth is bounded. */
  char deep[2048] = "", yaml[4096];
  for (int i = 0; i < 20; i++) strcat(deep, "{ not: ");
  strcat(deep, "{ path: PID-8, equals: F }");
  for (int i = 0; i < 20; i++) strcat(deep, " }");
  snprintf(yaml, sizeof yaml, "channel:\n  routes:\n    - when: %s\n      to: a\n", deep);
  fx_t f;
  CHECK_INT(fx_compile(&f, yaml), CAD_E_CONFIG);
  CHECK(has_error(&f, "nested deeper than 16 levels"));
  fx_free(&f);
}

/* ---- transforms --------------------------------------------------------- */

/* Compile one route to `a` with the given transform list; route `msg`. */
static int transform(fx_t *f, const char *steps, const char *msg) {
  char yaml[4096];
  snprintf(yaml, sizeof yaml,
           "tables:\n  loinc: { values: { GLU: 2345-7, K: 2823-3 } }\n"
           "channel:\n  routes:\n    - transform: %s\n      to: a\n",
           steps);
  if (fx_compile(f, yaml) != 0) {
    fprintf(stderr, "  compile failed:\n%s", fx_errors(f));
    return -100;
  }
  return fx_eval(f, msg);
}

TEST(set_value_is_escaped) {
  fx_t f;
  REQUIRE(transform(&f, "[ { set: PID-5.1, value: \"A&B|C^D~E\\\\F\" } ]", ORU) == 0);
  CHECK_STR(seg_of(&f, "PID"),
            "PID|1||123^^^HOSP^MR~QA7^^^TEST^PT||A\\T\\B\\F\\C\\S\\D\\R\\E\\E\\F^Jane||19800412|F");
  fx_free(&f);
}

TEST(set_msh5_msh6_and_version) {
  fx_t f;
  REQUIRE(transform(&f,
                    "[ { set: MSH-5, value: X }, { set: MSH-6, value: Y }, "
                    "{ version: \"2.3\" } ]",
                    ORU) == 0);
  CHECK_STR(seg_of(&f, "MSH"), "MSH|^~\\&|LIS|LAB|X|Y|20240305143000||ORU^R01|C1|P|2.3");
  fx_free(&f);
}

TEST(set_creates_missing_parts_and_segments) {
  fx_t f;
  REQUIRE(transform(&f, "[ { set: \"PID-3[3].4\", value: NEW }, { set: ZZZ-2, value: z } ]", ORU) ==
          0);
  CHECK_STR(seg_of(&f, "PID"), "PID|1||123^^^HOSP^MR~QA7^^^TEST^PT~^^^NEW||Doe^Jane||19800412|F");
  CHECK_STR(seg_of(&f, "ZZZ"), "ZZZ||z");
  fx_free(&f);
}

TEST(set_template_with_repetitions_and_segments) {
  fx_t f;
  REQUIRE(transform(&f,
                    "[ { set: \"PID-3[1].4\", template: \"${MSH-4}\" },"
                    "  { set: PID-18, template: \"${PID-3.1}^^^${MSH-4}&x\" },"
                    "  { set: \"OBX[*]-4\", template: \"${OBX-1}:${OBX-3.1}\" } ]",
                    ORU) == 0);
  CHECK_STR(seg_of(&f, "PID"),
            "PID|1||123^^^LAB^MR~QA7^^^TEST^PT||Doe^Jane||19800412|F||||||||||123^^^LAB&x");
  const char *o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|1|NM|GLU^Glucose^L|1:GLU|98") != NULL);
  CHECK(strstr(o, "OBX|2|NM|K^Potassium^L|2:K|4.1") != NULL);
  CHECK(strstr(o, "OBX|3|ST|XYZ^Other^L|3:XYZ|") != NULL);
  fx_free(&f);
}

TEST(template_with_custom_delimiters) {
  fx_t f;
  /* Field '$', component '%', repetition '~', escape '\', subcomponent '&'. */
  const char *msg = "MSH$%~\\&$LIS$LAB$$$2024$$ORU%R01$C1$P$2.5\nPID$1$$77%%%H$$Doe%Jane\n";
  REQUIRE(transform(&f,
                    "[ { set: PID-19, template: \"${PID-3.1}^^^${MSH-4}\" },"
                    "  { set: PID-5.2, value: \"A$B%C|^\" },"
                    "  { set: MSH-5, value: EHR } ]",
                    msg) == 0);
  CHECK_STR(seg_of(&f, "PID"), "PID$1$$77%%%H$$Doe%A\\F\\B\\S\\C|^$$$$$$$$$$$$$$77%%%LAB");
  CHECK_STR(seg_of(&f, "MSH"), "MSH$%~\\&$LIS$LAB$EHR$$2024$$ORU%R01$C1$P$2.5");
  fx_free(&f);
}

TEST(set_every_repetition_and_missing_subcomponent_delimiter) {
  fx_t f;
  REQUIRE(transform(&f, "[ { set: \"PID-3[*].4\", value: X }, { set: \"PID-5[2].2\", value: Y } ]",
                    ORU) == 0);
  CHECK_STR(seg_of(&f, "PID"), "PID|1||123^^^X^MR~QA7^^^X^PT||Doe^Jane~^Y||19800412|F");
  fx_free(&f);
  /* MSH-2 "^~\\" declares no subcomponent separator: a subcomponent past the
   * first cannot be written, and the message is refused, not mangled. */
  CHECK_INT(transform(&f, "[ { set: PID-3.1.2, value: X } ]", "MSH|^~\\|A\nPID|1||123\n"),
            CAD_ROUTE_ERROR);
  CHECK_INT(f.res.diag.hl7_code, 207);
  fx_free(&f);
  CHECK_INT(transform(&f, "[ { set: PID-3.1.1, value: \"a&b\" } ]", "MSH|^~\\|A\nPID|1||123\n"),
            CAD_ROUTE_DELIVER);
  CHECK_STR(seg_of(&f, "PID"), "PID|1||a&b");
  fx_free(&f);
}

TEST(copy_move_clear) {
  fx_t f;
  REQUIRE(transform(&f,
                    "[ { copy: PID-5, to: PID-9 }, { move: PID-7, to: PID-29 },"
                    "  { clear: \"PID-3[2]\" }, { copy: OBX-3.1, to: \"OBX[*]-3.4\" } ]",
                    ORU) == 0);
  CHECK_STR(seg_of(&f, "PID"),
            "PID|1||123^^^HOSP^MR~||Doe^Jane|||F|Doe^Jane||||||||||||||||||||19800412");
  const char *o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|2|NM|K^Potassium^L^K|") != NULL); /* each OBX its own code */
  fx_free(&f);
  /* A move from the same segment per occurrence. */
  REQUIRE(transform(&f, "[ { move: OBX-5, to: \"OBX[*]-7\" } ]", ORU) == 0);
  o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|1|NM|GLU^Glucose^L|||mg/dL|98|") != NULL);
  CHECK(strstr(o, "OBX|2|NM|K^Potassium^L|||mmol/L|4.1|") != NULL);
  fx_free(&f);
}

TEST(map_defaults) {
  fx_t f;
  REQUIRE(transform(&f, "[ { map: \"OBX[*]-3.1\", table: loinc } ]", ORU) == 0); /* keep */
  const char *o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "|2345-7^Glucose^L|") && strstr(o, "|2823-3^Potassium^L|") &&
        strstr(o, "|XYZ^Other^L|"));
  fx_free(&f);
  REQUIRE(transform(&f, "[ { map: \"OBX[*]-3.1\", table: loinc, default: empty } ]", ORU) == 0);
  o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|3|ST|^Other^L|") != NULL);
  fx_free(&f);
  REQUIRE(transform(&f, "[ { map: \"OBX[*]-3.1\", table: loinc, default: UNK } ]", ORU) == 0);
  o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|3|ST|UNK^Other^L|") != NULL);
  fx_free(&f);
  REQUIRE(transform(&f, "[ { map: \"OBX[*]-3.1\", table: loinc, default: { value: keep } } ]",
                    ORU) == 0);
  o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|3|ST|keep^Other^L|") != NULL);
  fx_free(&f);
  /* reject: AE, ERR 103 at the OBX, no output at all. */
  CHECK_INT(transform(&f,
                      "[ { set: MSH-5, value: X }, { map: \"OBX[*]-3.1\", table: loinc, "
                      "default: reject } ]",
                      ORU),
            CAD_ROUTE_ERROR);
  CHECK_INT(f.res.nouts, 0);
  CHECK_INT(f.res.diag.hl7_code, 103);
  CHECK_STR(f.res.diag.seg_id, "OBX");
  CHECK_INT(f.res.diag.segment, 7); /* 7th segment of the message */
  CHECK_INT(f.res.diag.field, 3);
  CHECK_INT(f.res.route, 0);
  CHECK_INT(f.res.step, 2);
  CHECK_STR(f.res.diag.reason, "route route-1 step 2: OBX[3]-3.1: code not in table 'loinc'");
  CHECK(strstr(f.res.diag.reason, "XYZ") == NULL); /* no message content */
  fx_free(&f);
}

TEST(map_from_csv_table) {
  char path[] = "/tmp/cad_routes_csv_XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const char *csv = "code,loinc\r\n# comment\r\n\r\nGLU,2345-7\r\n\"K\",\"28\"\"23-3\"\r\n";
  REQUIRE(write(fd, csv, strlen(csv)) == (ssize_t)strlen(csv));
  close(fd);
  char yaml[1024];
  snprintf(yaml, sizeof yaml,
           "tables:\n  t: { file: %s, header: true }\n"
           "channel:\n  routes:\n    - transform: [ { map: \"OBX[*]-3.1\", table: t } ]\n"
           "      to: a\n",
           path);
  fx_t f;
  REQUIRE(fx_compile(&f, yaml) == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_DELIVER);
  const char *o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "|2345-7^Glucose^L|") != NULL);
  CHECK(strstr(o, "|28\"23-3^Potassium^L|") != NULL);
  cad_str_t v;
  CHECK(cad_tables_get(f.tables, "t", "GLU", 3, &v));
  CHECK_STRN(v.p, v.len, "2345-7");
  CHECK(!cad_tables_get(f.tables, "t", "code", 4, &v)); /* the header is skipped */
  fx_free(&f);
  unlink(path);
}

/* Keys of every length from 1 to 40 (up to 16 bytes a key is hashed and
 * compared as two words, longer ones byte by byte): each is found by both
 * lookups (cad__table_get from any text, cad__table_get_kw from text where
 * 16 bytes may be read), and neither finds a key one byte shorter, longer or
 * different in its last byte, nor a key with a byte of 0x80 or above. */
TEST(table_keys_of_every_length) {
  char yaml[8192];
  size_t o = (size_t)snprintf(yaml, sizeof yaml, "tables:\n  t: { values: {");
  for (int n = 1; n <= 40; n++) {
    char k[48];
    for (int i = 0; i < n; i++) k[i] = (char)('a' + (i * 7 + n) % 26);
    k[n] = 0;
    o += (size_t)snprintf(yaml + o, sizeof yaml - o, "%s %s: v%d", n > 1 ? "," : "", k, n);
  }
  snprintf(yaml + o, sizeof yaml - o,
           " } }\nchannel:\n  routes:\n    - transform: [ { map: \"OBX[*]-3.1\", table: t } ]\n"
           "      to: a\n");
  fx_t f;
  REQUIRE(fx_compile(&f, yaml) == 0);
  const cad__table_t *t = cad__tables_find(f.tables, "t", 1);
  REQUIRE(t != NULL);
  CHECK_INT((int)t->n, 40);
  for (int n = 1; n <= 40; n++) {
    /* The key at the start of a buffer with room to read 16 bytes past it,
     * followed by bytes that are not zero (they must not count). */
    char b[64];
    memset(b, 'z', sizeof b);
    for (int i = 0; i < n; i++) b[i] = (char)('a' + (i * 7 + n) % 26);
    char want[8];
    snprintf(want, sizeof want, "v%d", n);
    cad_str_t v = {NULL, 0};
    CHECK(cad__table_get(t, b, (size_t)n, &v));
    CHECK_STRN(v.p, v.len, want);
    if (n > 1) CHECK(!cad__table_get(t, b, (size_t)n - 1, NULL));
    CHECK(!cad__table_get(t, b, (size_t)n + 1, NULL));
    if (n <= 16) {
      v = (cad_str_t){NULL, 0};
      CHECK(cad__table_get_kw(t, cad__key_words(b, (size_t)n), (size_t)n, &v));
      CHECK_STRN(v.p, v.len, want);
      if (n < 16)
        CHECK(!cad__table_get_kw(t, cad__key_words(b, (size_t)n + 1), (size_t)n + 1, NULL));
      CHECK(cad__table_hash(b, (size_t)n) ==
            cad__hash_words(cad__key_words(b, (size_t)n), (size_t)n));
    }
    b[n - 1] = (char)0xc3;
    CHECK(!cad__table_get(t, b, (size_t)n, NULL));
    if (n <= 16) CHECK(!cad__table_get_kw(t, cad__key_words(b, (size_t)n), (size_t)n, NULL));
  }
  CHECK(!cad__table_get(t, "", 0, NULL));
  fx_free(&f);
}

TEST(replace_upper_lower_trim) {
  fx_t f;
  REQUIRE(transform(&f,
                    "[ { replace: \"PID-3[1].1\", pattern: \"([0-9])\", with: \"<\\\\1>\" },"
                    "  { upper: PID-5.2 }, { lower: PID-5.1 }, { trim: \"OBX[3]-5\" },"
                    "  { replace: MSH-3, pattern: \"^L\", with: \"&|\" } ]",
                    ORU) == 0);
  CHECK_STR(seg_of(&f, "PID"), "PID|1||<1><2><3>^^^HOSP^MR~QA7^^^TEST^PT||doe^JANE||19800412|F");
  CHECK_STR(seg_of(&f, "MSH"),
            "MSH|^~\\&|\\T\\\\F\\IS|LAB|EHR|HOSP|20240305143000||ORU^R01|C1|P|2.5.1");
  const char *o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBX|3|ST|XYZ^Other^L||text|") != NULL);
  fx_free(&f);
}

TEST(format_date) {
  fx_t f;
  REQUIRE(transform(&f,
                    "[ { format_date: OBR-7, precision: minute },"
                    "  { format_date: PID-7, format: \"%Y-%m-%d\" },"
                    "  { format_date: MSH-7, precision: second } ]",
                    "MSH|^~\\&|A|B|C|D|202401021530+0100\nPID|1||1||X||19800412\n"
                    "OBR|1|||||| 20240305121045\nOBR|2||||||20240305121045\n") == CAD_ROUTE_ERROR);
  /* " 2024..." is not a date: error 102 at OBR-7. */
  CHECK_INT(f.res.diag.hl7_code, 102);
  CHECK_STR(f.res.diag.seg_id, "OBR");
  CHECK_INT(f.res.diag.field, 7);
  fx_free(&f);
  REQUIRE(transform(&f,
                    "[ { format_date: \"OBR[*]-7\", precision: minute },"
                    "  { format_date: PID-7, format: \"%Y-%m-%d\" },"
                    "  { format_date: MSH-7, precision: second } ]",
                    "MSH|^~\\&|A|B|C|D|202401021530+0100\nPID|1||1||X||19800412\n"
                    "OBR|1||||||20240305121045\nOBR|2||||||2024\n") == 0);
  CHECK_STR(seg_of(&f, "MSH"), "MSH|^~\\&|A|B|C|D|20240102153000+0100");
  CHECK_STR(seg_of(&f, "PID"), "PID|1||1||X||1980-04-12");
  const char *o = fx_out(&f, 0, 0);
  REQUIRE(o);
  CHECK(strstr(o, "OBR|1||||||202403051210\n") != NULL);
  CHECK(strstr(o, "OBR|2||||||202401010000\n") != NULL); /* padded to the precision */
  fx_free(&f);
}

TEST(dead_letter_on_error) {
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "tables:\n  t: { values: { A: B } }\n"
                     "channel:\n  on_error: dead_letter\n  routes:\n"
                     "    - transform: [ { map: MSH-3, table: t, default: reject } ]\n"
                     "      to: a\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_DEAD_LETTER);
  CHECK_INT(f.res.nouts, 0);
  CHECK(strstr(f.res.diag.reason, "MSH-3: code not in table 't'") != NULL);
  fx_free(&f);
}

TEST(delete_segments) {
  fx_t f;
  REQUIRE(transform(&f, "[ { delete: NTE }, { delete: OBX, when: { path: OBX-11, equals: D } } ]",
                    ORU) == 0);
  CHECK_STR(fx_out(&f, 0, 0),
            "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305143000||ORU^R01|C1|P|2.5.1\n"
            "PID|1||123^^^HOSP^MR~QA7^^^TEST^PT||Doe^Jane||19800412|F\n"
            "OBR|1|O1|F1|BMP|||20240305121045\n"
            "OBX|1|NM|GLU^Glucose^L||98|mg/dL|||||F\n"
            "OBX|3|ST|XYZ^Other^L||  text  ||||||F\n");
  fx_free(&f);
  /* A condition on another segment applies to every occurrence alike. */
  REQUIRE(transform(&f, "[ { delete: OBX, when: { path: PID-8, equals: M } } ]", ORU) == 0);
  CHECK_INT(f.res.outs[0].bytes.len, strlen(ORU)); /* nothing deleted */
  fx_free(&f);
}

TEST(add_and_rename_segments) {
  fx_t f;
  REQUIRE(transform(&f,
                    "[ { add: \"ZPI|${PID-3.1}|a^b\", after: PID },"
                    "  { add: \"ZEN|end\" }, { add: \"ZOB|x\", after: OBX },"
                    "  { rename: NTE, to: ZNT } ]",
                    ORU) == 0);
  CHECK_STR(fx_out(&f, 0, 0),
            "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305143000||ORU^R01|C1|P|2.5.1\n"
            "PID|1||123^^^HOSP^MR~QA7^^^TEST^PT||Doe^Jane||19800412|F\n"
            "ZPI|123|a^b\n"
            "OBR|1|O1|F1|BMP|||20240305121045\n"
            "OBX|1|NM|GLU^Glucose^L||98|mg/dL|||||F\n"
            "ZNT|1||first note\n"
            "OBX|2|NM|K^Potassium^L||4.1|mmol/L|||||D\n"
            "OBX|3|ST|XYZ^Other^L||  text  ||||||F\n"
            "ZOB|x\n"
            "ZNT|1||second note\n"
            "ZEN|end\n");
  fx_free(&f);
}

/* ---- routing ------------------------------------------------------------ */

TEST(fanout_shapes_per_route) {
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes:\n"
                     "    - { name: one, transform: [ { set: MSH-5, value: ONE } ], to: [a, c],"
                     " continue: true }\n"
                     "    - { name: two, transform: [ { delete: NTE } ], to: b, continue: true }\n"
                     "    - { name: three, when: { path: PID-8, equals: M }, to: c }\n"
                     "    - { name: four, to: c }\n"
                     "    - { name: five, to: a }\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_DELIVER);
  CHECK_INT(f.res.nouts, 4); /* a, c from one; b from two; c from four; stops at four */
  const char *a = fx_out(&f, 0, 0);
  REQUIRE(a);
  CHECK(strstr(a, "|EHR|") == NULL && strstr(a, "|ONE|") != NULL && strstr(a, "NTE|") != NULL);
  const char *b = fx_out(&f, 1, 0);
  REQUIRE(b);
  CHECK(strstr(b, "|EHR|") != NULL && strstr(b, "NTE|") == NULL); /* two saw no MSH-5 change */
  CHECK(fx_out(&f, 2, 0) && strstr(fx_out(&f, 2, 0), "|ONE|"));
  const char *c2 = fx_out(&f, 2, 1);
  REQUIRE(c2);
  CHECK_INT(strlen(c2), strlen(ORU)); /* four: unchanged */
  CHECK_INT(f.res.outs[3].route, 3);
  CHECK(fx_out(&f, 0, 1) == NULL); /* five never ran */
  fx_free(&f);
}

TEST(unchanged_output_is_the_input) {
  fx_t f;
  REQUIRE(fx_compile(&f, "channel:\n  routes: [ { to: a } ]\n") == 0);
  const char *msg = "MSH|^~\\&|A\rPID|1\r";
  cad_route_result_t res;
  cad_arena_t ar;
  cad_arena_init(&ar, 4096, 0);
  REQUIRE(cad_routes_eval(f.r, msg, strlen(msg), NULL, &ar, &res) == 0);
  REQUIRE(res.nouts == 1);
  CHECK(res.outs[0].bytes.p == msg); /* borrowed, not copied */
  /* LF terminators are normalised to CR, as cad_hl7_serialize does. */
  const char *lf = "MSH|^~\\&|A\nPID|1\r\nPV1|1";
  REQUIRE(cad_routes_eval(f.r, lf, strlen(lf), NULL, &ar, &res) == 0);
  CHECK_STRN(res.outs[0].bytes.p, res.outs[0].bytes.len, "MSH|^~\\&|A\rPID|1\rPV1|1");
  cad_arena_free(&ar);
  fx_free(&f);
}

TEST(serialize_matches_hl7_serialize) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  cad_hl7_msg_t m;
  const char *msg = ORU;
  REQUIRE(cad_hl7_parse(&m, msg, strlen(msg), &a, NULL, NULL) == 0);
  cad_hl7_path_t p;
  cad_hl7_path_parse("OBX[*]-5", 8, &p, NULL, NULL);
  REQUIRE(cad_hl7_set(&m, &p, "x&y", 3, 0) > 0);
  REQUIRE(cad_hl7_seg_delete(&m, 4) == 0);
  REQUIRE(cad_hl7_seg_insert(&m, 1, "ZZZ|1", 5) == 0);
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(cad_hl7_serialize(&m, &b) == 0);
  cad_str_t s;
  REQUIRE(cad_routes_serialize(&m, &a, &s) == 0);
  CHECK(s.len == b.len && memcmp(s.p, b.data, b.len) == 0);
  cad_buf_free(&b);
  cad_arena_free(&a);
}

/* ---- fused runs against the step-by-step reference ----------------------
 *
 * routes_steps.c applies runs of steps on one segment's fields one occurrence
 * at a time; cad_routes_set_stepwise() turns that off.  Random step lists from
 * a pool that mixes fusable steps with ones that are not (move, clear, delete,
 * reads of another occurrence, added segments, more components than a fused
 * run holds, failing maps and dates) must give the same disposition, bytes,
 * failing step and ERR text both ways, on messages with custom delimiters,
 * escapes, non-UTF-8 bytes, repetitions and subcomponents. */

static const char *const pool[] = {
    "{ set: \"OBX[*]-3.4\", value: L }",
    "{ set: OBX-3.2, value: \"a^b|c\" }",
    "{ set: \"OBX[2]-5\", value: X }",
    "{ set: \"OBX[1]-3.1\", value: first }",
    "{ set: \"OBX[*]-5\", template: \"${OBX-3.1}^${PID-3.1}~${OBX-1}\" }",
    "{ set: \"OBX[*]-3\", value: \"a&b\" }",
    "{ set: \"OBX[*]-3\", template: \"${OBX-3.2}^${OBX-3.1}\" }",
    "{ set: \"OBX[*]-3.1\", template: \"${OBX[2]-3.1}\" }",
    "{ set: \"OBX[*]-40.2\", value: far }",
    "{ set: \"OBX[*]-3.40\", value: many }",
    "{ set: \"OBX[*]-3[1].2\", value: r1 }",
    "{ copy: OBX-3.1, to: \"OBX[*]-3.4\" }",
    "{ copy: OBX-3.2, to: \"OBX[*]-3.5\" }",
    "{ copy: OBX-3, to: \"OBX[*]-9\" }",
    "{ copy: OBX-3.1.2, to: \"OBX[*]-3.7\" }",
    "{ copy: \"OBX-3[2]\", to: \"OBX[*]-6.1\" }",
    "{ copy: MSH-10, to: \"OBX[*]-18\" }",
    "{ copy: OBX-5, to: OBX-6 }",
    "{ map: \"OBX[*]-3.1\", table: loinc }",
    "{ map: \"OBX[*]-3.1\", table: loinc, default: reject }",
    "{ map: \"OBX[*]-3.1\", table: loinc, default: empty }",
    "{ map: \"OBX[*]-3\", table: loinc, default: { value: \"Z^Z\" } }",
    "{ map: \"OBX[*]-3.2\", table: loinc, default: UNK }",
    "{ upper: \"OBX[*]-3.2\" }",
    "{ lower: OBX-5 }",
    "{ trim: \"OBX[*]-5\" }",
    "{ replace: \"OBX[*]-3.2\", pattern: \"[aeiou]\", with: \"_\" }",
    "{ format_date: \"OBX[*]-14\", precision: minute }",
    "{ format_date: OBR-7, format: \"%Y-%m-%d\" }",
    "{ set: MSH-5, value: EHR }",
    "{ set: MSH-6, template: \"${MSH-4}^x\" }",
    "{ set: \"PID-3[1].4\", template: \"${MSH-4}\" }",
    "{ upper: PID-5.1 }",
    "{ clear: \"OBX[*]-3.2\" }",
    "{ move: OBX-5, to: \"OBX[*]-7\" }",
    "{ delete: NTE }",
    "{ set: ZZZ-2, value: z }",
    "{ set: \"ZZZ[*]-3.2\", template: \"${ZZZ-2}\" }",
    "{ add: \"NTE|9||added\", after: OBX }",
    "{ rename: NTE, to: ZNT }",
};

static const char *const diff_msgs[] = {
    ORU,
    /* escapes, a non-UTF-8 byte, a bad date, subcomponents, repetitions */
    "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305143000||ORU^R01|C2|P|2.5.1\n"
    "PID|1||9^^^H||Ro\xe9^Ana\n"
    "OBR|1|O|F|P|||2024030512\n"
    "OBX|1|ST|GLU&x^Gl\\T\\u^L~K^Pot||  v \\F\\ ||||||F|||2024030513\n"
    "OBX|2|ST|\\X4B\\^K^L||\"\"||||||F|||notadate\n"
    "OBX|3|ST|||\n",
    /* custom delimiters: field '$', component '%', repetition '~' */
    "MSH$%~\\&$LIS$LAB$$$2024$$ORU%R01$C3$P$2.5\nPID$1$$77%%%H$$Doe%Jane\n"
    "OBX$1$NM$GLU%Glucose%L$$98\nOBX$2$NM$K%Potassium$$4.1\n",
    /* no subcomponent separator declared */
    "MSH|^~\\|A|B|C|D|2024||ORU^R01|C4|P|2.5\nPID|1||1\nOBX|1|NM|GLU^G||1\n",
    /* no OBX at all */
    "MSH|^~\\&|A|B|C|D|2024||ADT^A08|C5|P|2.5\nPID|1||1^^^H||X^Y\n",
    /* a field with 40 components and one with many repetitions */
    "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C6|P|2.5\nPID|1||1\n"
    "OBX|1|NM|K^a^b^c^d^e^f^g^h^i^j^k^l^m^n^o^p^q^r^s^t^u^v^w^x^y^z^1^2^3^4^5^6^7^8^9^0^x^y^z||1\n"
    "OBX|2|NM|GLU~K~NA~CL||2\n",
    /* a batch whose second message has other delimiters */
    "FHS|^~\\&|A\nBHS|^~\\&|A\nMSH|^~\\&|A|B|C|D|2024||ORU^R01|C7|P|2.5\n"
    "OBX|1|NM|GLU^G||1\nMSH$%~\\&$A$B$C$D$2024$$ORU%R01$C8$P$2.5\nOBX$1$NM$K%P$$2\n"
    "BTS|1\nFTS|1\n",
    /* MSH-2 declares only a component separator */
    "MSH|^|A|B|C|D|2024||ORU^R01|C9|P|2.5\nPID|1||5\nOBX|1|NM|GLU^G~X||1\n",
};

static unsigned diff_rand(unsigned *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Evaluate; a copy of what came out, for comparing. */
typedef struct outcome {
  int rc, disposition, step, route, hl7;
  uint32_t segment, field;
  char seg_id[4];
  size_t nouts;
  char reason[96];
  char bytes[16384]; /* every output: destination index, then its bytes */
  size_t len;
} outcome_t;

static void eval_into(fx_t *f, const char *msg, outcome_t *o) {
  memset(o, 0, sizeof *o);
  o->rc = fx_eval(f, msg);
  o->disposition = (int)f->res.disposition;
  o->step = f->res.step;
  o->route = f->res.route;
  o->hl7 = f->res.diag.hl7_code;
  o->segment = f->res.diag.segment;
  o->field = f->res.diag.field;
  memcpy(o->seg_id, f->res.diag.seg_id, 4);
  o->nouts = f->res.nouts;
  snprintf(o->reason, sizeof o->reason, "%s", f->res.diag.reason);
  for (size_t i = 0; i < f->res.nouts; i++) {
    cad_str_t b = f->res.outs[i].bytes;
    REQUIRE(o->len + b.len + 1 <= sizeof o->bytes);
    o->bytes[o->len++] = (char)('0' + f->res.outs[i].dest);
    memcpy(o->bytes + o->len, b.p, b.len);
    o->len += b.len;
  }
}

TEST(fused_runs_match_stepwise) {
  const size_t npool = sizeof pool / sizeof pool[0], nmsg = sizeof diff_msgs / sizeof diff_msgs[0];
  unsigned seed = 12345;
  int compared = 0, changed = 0, errors = 0;
  for (int round = 0; round < 400; round++) {
    /* Two routes: the first goes on to the second (its own copy), so a
     * route that starts again step by step follows one that did not. */
    char steps[2][2048];
    for (int r = 0; r < 2; r++) {
      size_t o = (size_t)snprintf(steps[r], sizeof steps[r], "[ ");
      int n = 1 + (int)(diff_rand(&seed) % 6);
      for (int k = 0; k < n; k++)
        o += (size_t)snprintf(steps[r] + o, sizeof steps[r] - o, "%s%s", k ? ", " : "",
                              pool[diff_rand(&seed) % npool]);
      snprintf(steps[r] + o, sizeof steps[r] - o, " ]");
    }
    char yaml[5120];
    snprintf(yaml, sizeof yaml,
             "tables:\n  loinc: { values: { GLU: 2345-7, K: 2823-3 } }\n"
             "channel:\n  routes:\n"
             "    - { transform: %s, to: a, continue: true }\n"
             "    - { transform: %s, to: b }\n",
             steps[0], steps[1]);
    fx_t f;
    if (fx_compile(&f, yaml) != 0) {
      fprintf(stderr, "  compile failed:\n%s  steps: %s / %s\n", fx_errors(&f), steps[0], steps[1]);
      CHECK(0);
      fx_free(&f);
      continue;
    }
    for (size_t m = 0; m < nmsg; m++) {
      outcome_t a, b;
      cad_routes_set_stepwise(f.r, false);
      eval_into(&f, diff_msgs[m], &a);
      cad_routes_set_stepwise(f.r, true);
      eval_into(&f, diff_msgs[m], &b);
      bool same = a.rc == b.rc && a.disposition == b.disposition && a.step == b.step &&
                  a.route == b.route && a.hl7 == b.hl7 && a.segment == b.segment &&
                  a.field == b.field && memcmp(a.seg_id, b.seg_id, 4) == 0 && a.nouts == b.nouts &&
                  strcmp(a.reason, b.reason) == 0 && a.len == b.len &&
                  memcmp(a.bytes, b.bytes, a.len) == 0;
      if (!same) {
        fprintf(stderr,
                "  steps %s / %s, message %zu:\n  fused    %d %s [%.*s]\n"
                "  stepwise %d %s [%.*s]\n",
                steps[0], steps[1], m, a.disposition, a.reason, (int)a.len, a.bytes, b.disposition,
                b.reason, (int)b.len, b.bytes);
        CHECK(same);
      }
      compared++;
      if (a.disposition == CAD_ROUTE_DELIVER) changed++;
      else errors++;
    }
    fx_free(&f);
  }
  /* Both outcomes must have been exercised. */
  CHECK(changed > 1000);
  CHECK(errors > 100);
  fprintf(stderr, "  %d comparisons: %d delivered, %d errors\n", compared, changed, errors);
}

TEST(unrouted_drop_reject_destination) {
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes: [ { when: { path: MSH-9.1, equals: ADT }, to: a } ]\n"
                     "  unrouted: drop\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_FILTERED);
  CHECK_INT(f.res.nouts, 0);
  fx_free(&f);
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes: [ { when: { path: MSH-9.1, equals: ADT }, to: a } ]\n"
                     "  unrouted: reject\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_REJECTED);
  CHECK_INT(f.res.diag.hl7_code, 200);
  fx_free(&f);
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes: [ { when: { path: MSH-9.1, equals: ADT }, to: a } ]\n"
                     "  unrouted: c\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_DELIVER);
  CHECK(f.res.unrouted);
  CHECK_INT(f.res.nouts, 1);
  CHECK_INT(f.res.outs[0].dest, 2);
  fx_free(&f);
  /* A channel without routes sends everything to its `to`. */
  REQUIRE(fx_compile(&f, "channel:\n  to: [b]\n  listen: [x]\n") == 0);
  CHECK_INT(fx_eval(&f, ORU), CAD_ROUTE_DELIVER);
  CHECK_INT(f.res.outs[0].dest, 1);
  fx_free(&f);
}

TEST(unparsable_message_is_rejected) {
  fx_t f;
  REQUIRE(fx_compile(&f, "channel:\n  routes: [ { to: a } ]\n") == 0);
  CHECK_INT(fx_eval(&f, "PID|1|2\n"), CAD_ROUTE_REJECTED);
  CHECK(f.res.diag.code != 0);
  fx_free(&f);
}

TEST(arena_budget_exhausted_is_an_error) {
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes: [ { transform: [ { set: PID-5, value: X } ], "
                     "to: a } ]\n") == 0);
  cad_arena_t small;
  cad_arena_init(&small, 256, 512);
  cad_route_result_t res;
  int rc = cad_routes_eval(f.r, ORU, strlen(ORU), NULL, &small, &res);
  CHECK_INT(rc, CAD_E_NOMEM);
  CHECK_INT(res.disposition, CAD_ROUTE_ERROR);
  CHECK_INT(res.diag.hl7_code, 207);
  cad_arena_free(&small);
  fx_free(&f);
}

TEST(fused_attempt_costs_no_extra_budget) {
  /* A fused run that gives up (a field of more than 32 components) makes
   * the route start again step by step: the attempt's memory is given back,
   * so a budget that suffices step by step suffices. */
  fx_t f;
  char yaml[2048] = "channel:\n  routes:\n    - transform:\n";
  for (int i = 0; i < 20; i++) strcat(yaml, "        - { clear: \"PID-3.2\" }\n");
  strcat(yaml, "        - { set: \"PID-5.40\", value: x }\n      to: a\n");
  REQUIRE(fx_compile(&f, yaml) == 0);
  cad_buf_t msg = CAD_BUF_INIT;
  REQUIRE(cad_buf_puts(&msg, "MSH|^~\\&|A|B|C|D|2024||ADT^A08|C1|P|2.5\rPID|1||") == 0);
  for (int i = 0; i < 10000; i++) REQUIRE(cad_buf_putc(&msg, 'A') == 0);
  REQUIRE(cad_buf_puts(&msg, "^x^y||Doe^J\r") == 0);
  size_t need[2];
  for (int stepwise = 1; stepwise >= 0; stepwise--) {
    cad_arena_t a;
    cad_arena_init(&a, 4096, 0);
    cad_route_result_t res;
    cad_routes_set_stepwise(f.r, stepwise);
    CHECK_INT(cad_routes_eval(f.r, msg.data, msg.len, NULL, &a, &res), 0);
    CHECK_INT(res.disposition, CAD_ROUTE_DELIVER);
    need[stepwise] = a.used;
    cad_arena_free(&a);
  }
  CHECK(need[0] <= need[1] + 4096); /* fused <= stepwise, up to one chunk */
  cad_arena_t tight;
  cad_arena_init(&tight, 4096, need[1]);
  cad_route_result_t res;
  cad_routes_set_stepwise(f.r, false);
  CHECK_INT(cad_routes_eval(f.r, msg.data, msg.len, NULL, &tight, &res), 0);
  CHECK_INT(res.disposition, CAD_ROUTE_DELIVER);
  cad_arena_free(&tight);
  cad_buf_free(&msg);
  fx_free(&f);
}

/* ---- compile errors ----------------------------------------------------- */

static void expect_error(const char *yaml, const char *needle) {
  fx_t f;
  int rc = fx_compile(&f, yaml);
  CHECK_INT(rc, CAD_E_CONFIG);
  CHECK(has_error(&f, needle));
  fx_free(&f);
}

TEST(errors_with_positions) {
  expect_error("channel:\n  routes:\n    - { to: nowhere }\n",
               "t.yaml:3:13: unknown destination 'nowhere' (destinations defined: a, b, c)");
  expect_error("channel:\n  routes:\n    - { to: a, transform: [ { map: PID-3, table: nope } ] }\n",
               "t.yaml:3:50: unknown table 'nope' (tables defined: none)");
  expect_error("channel:\n  routes:\n    - { to: a, colour: red }\n",
               "t.yaml:3:16: unknown key 'colour' in a route (expected one of: name, when, "
               "transform, to, continue)");
  expect_error("channel:\n  routes:\n    - { to: a, when: { path: PID-3, equal: x } }\n",
               "t.yaml:3:37: unknown key 'equal' in a condition");
  expect_error("channel:\n  routes:\n    - { to: a, when: { path: PID-3, in: x } }\n",
               "t.yaml:3:41: 'in' needs a list of values");
  expect_error("channel:\n  routes:\n    - { to: a, when: { path: \"PID-3[x]\", equals: x } }\n",
               "t.yaml:3:37: invalid path 'PID-3[x]'");
  expect_error(
      "channel:\n  routes:\n    - { to: a, transform: [ { set: PID-3, value: x, "
      "colour: y } ] }\n",
      "t.yaml:3:53: unknown key 'colour' in a 'set' step (expected: value template)");
  expect_error("channel:\n  routes:\n    - { to: a, transform: [ { frobnicate: PID-3 } ] }\n",
               "t.yaml:3:29: a transform step needs an action");
  expect_error("channel:\n  routes:\n    - { to: a, transform: { set: PID-3 } }\n",
               "t.yaml:3:27: 'transform' must be a list of steps, not a mapping");
  expect_error("channel:\n  routes:\n    - { to: a, transform: [ { delete: BHS } ] }\n",
               "t.yaml:3:39: a header segment (MSH, BHS, FHS) cannot be deleted");
  expect_error("channel:\n  routes:\n    - { to: a, continue: maybe }\n",
               "t.yaml:3:26: 'continue' must be true or false");
  expect_error("channel:\n  routes:\n    - { when: { path: PID-3, exists: true } }\n",
               "t.yaml:3:7: route 'route-1' needs 'to'");
  expect_error("channel:\n  routes: [ { to: a } ]\n  unrouted: somewhere\n",
               "t.yaml:3:13: 'unrouted' must be drop, reject or a destination name");
  expect_error("channel:\n  routes: [ { to: a } ]\n  on_error: ignore\n",
               "t.yaml:3:13: 'on_error' must be reject");
  expect_error("channel:\n  routes: [ { to: a, transform: [ { set: MSH-2, value: x } ] } ]\n",
               "MSH-1 and MSH-2 (the delimiters) cannot be changed");
  expect_error(
      "channel:\n  routes: [ { to: a, transform: [ { set: PID-3, template: \"a${PID-4\" "
      "} ] } ]\n",
      "t.yaml:2:61: '${' without a closing '}'");
  expect_error("channel:\n  routes: [ { to: a, transform: [ { delete: nte } ] } ]\n",
               "'delete' must be a segment id of 3 capital letters or digits");
  expect_error("channel:\n  routes: [ { to: a, transform: [ { add: \"no segment\" } ] } ]\n",
               "'add' needs a segment in ER7");
  expect_error(
      "channel:\n  routes: [ { to: a, transform: [ { format_date: PID-7, format: \"%q\" "
      "} ] } ]\n",
      "unknown conversion in 'format'");
  expect_error(
      "channel:\n  routes: [ { to: a, transform: [ { replace: PID-7, pattern: \"[\", "
      "with: x } ] } ]\n",
      "invalid regular expression");
  /* Patterns that would make regcomp take gigabytes are refused (a fuzzer
   * finding: tests/fuzz/corpus/routes/regress-oom-nested-repetition.yaml). */
  expect_error("channel:\n  routes: [ { to: a, when: { path: PID-8, matches: \"^[FM]+++$\" } } ]\n",
               "regular expression refused: a repetition operator right after another one");
  expect_error(
      "channel:\n  routes: [ { to: a, when: { path: PID-8, matches: \"(a*b*c*d*e*f*g*h*i*j*){40}"
      "k*l*m*n*o*p*q*r*s*t*u*v*w*x*y*z*A*B*C*D*E*F*G*\" } } ]\n",
      "regular expression refused: more than 32 repetition operators");
  expect_error("channel:\n  routes: [ { to: a } ]\n  to: [b]\n",
               "t.yaml:3:7: a channel with 'routes' names its destinations in each route's 'to'");
  /* Several problems are all reported. */
  fx_t f;
  CHECK_INT(fx_compile(&f, "channel:\n  routes:\n    - { to: x }\n    - { to: y }\n"),
            CAD_E_CONFIG);
  CHECK(has_error(&f, "'x'") && has_error(&f, "'y'"));
  fx_free(&f);
}

TEST(table_errors) {
  expect_error("tables:\n  t: { values: { A: 1 }, file: x.csv }\nchannel: { routes: [] }\n",
               "t.yaml:2:6: table 't' needs exactly one of 'values' (inline) or 'file' (CSV)");
  expect_error("tables:\n  t: { file: /nonexistent/x.csv }\n",
               "t.yaml:2:14: cannot read table file '/nonexistent/x.csv': No such file");
  expect_error("tables:\n  t: { values: [a, b] }\n", "t.yaml:2:16: 'values' must be a mapping");
  expect_error("tables:\n  t: { valuez: {} }\n", "t.yaml:2:8: unknown key 'valuez' in table 't'");
  char path[] = "/tmp/cad_routes_dup_XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const char *csv = "A,1\nB,2\nA,3\nC\n";
  REQUIRE(write(fd, csv, strlen(csv)) == (ssize_t)strlen(csv));
  close(fd);
  char yaml[512], want[512];
  snprintf(yaml, sizeof yaml, "tables:\n  t: { file: %s }\n", path);
  snprintf(want, sizeof want, "%s:4:2: expected key,value", path);
  expect_error(yaml, want);
  fd = open(path, O_WRONLY | O_TRUNC);
  REQUIRE(fd >= 0);
  csv = "A,1\nB,2\nA,3\n";
  REQUIRE(write(fd, csv, strlen(csv)) == (ssize_t)strlen(csv));
  close(fd);
  snprintf(want, sizeof want, "%s:3:1: duplicate key 'A' in table 't' (first at line 1)", path);
  expect_error(yaml, want);
  unlink(path);
}

/* select: PID-3 repetitions chosen by assigning authority and type, never
 * by position (the Epic convention: enterprise id and facility MRN). */
#define EPIC_ADT                                                                   \
  "MSH|^~\\&|EPIC|EPICADT|RCV|SITE|20240305||ADT^A01|E1|P|2.5.1\n"                 \
  "PID|1||E3866033^^^EPIC^MRN~900091282^^^EPI^MR~123-45-6789^^^SSA^SS||Doe^Jane\n" \
  "PID|2||777^^^EPI^MR\n"

TEST(select_repetitions_by_components) {
  fx_t f;
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes:\n    - transform:\n"
                     "        - { select: \"PID[*]-3\", where: { 4: EPI, 5: MR } }\n"
                     "      to: a\n") == 0);
  REQUIRE(fx_eval(&f, EPIC_ADT) == CAD_ROUTE_DELIVER);
  CHECK(strstr(fx_out(&f, 0, 0), "PID|1||900091282^^^EPI^MR||Doe^Jane\nPID|2||777^^^EPI^MR") !=
        NULL);
  /* The order of the repetitions does not matter. */
  REQUIRE(fx_eval(&f,
                  "MSH|^~\\&|A|B|C|D|1||ADT^A01|E2|P|2.5.1\n"
                  "PID|1||900091282^^^EPI^MR~E3866033^^^EPIC^MRN\n") == CAD_ROUTE_DELIVER);
  CHECK(strcmp(seg_of(&f, "PID"), "PID|1||900091282^^^EPI^MR") == 0);
  /* None matches: kept as it was (the default). */
  REQUIRE(fx_eval(&f, "MSH|^~\\&|A|B|C|D|1||ADT^A01|E3|P|2.5.1\nPID|1||E1^^^EPIC^MRN\n") ==
          CAD_ROUTE_DELIVER);
  CHECK(strcmp(seg_of(&f, "PID"), "PID|1||E1^^^EPIC^MRN") == 0);
  fx_free(&f);

  /* A list of values; missing: reject names the field. */
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes:\n    - transform:\n"
                     "        - { select: PID-3, where: { 4: [EPIC, SSA] }, missing: reject }\n"
                     "      to: a\n") == 0);
  REQUIRE(fx_eval(&f, EPIC_ADT) == CAD_ROUTE_DELIVER);
  CHECK(strcmp(seg_of(&f, "PID"), "PID|1||E3866033^^^EPIC^MRN~123-45-6789^^^SSA^SS||Doe^Jane") ==
        0);
  REQUIRE(fx_eval(&f, "MSH|^~\\&|A|B|C|D|1||ADT^A01|E4|P|2.5.1\nPID|1||9^^^EPI^MR\n") ==
          CAD_ROUTE_ERROR);
  CHECK(f.res.diag.hl7_code == 101 && strcmp(f.res.diag.seg_id, "PID") == 0 &&
        f.res.diag.field == 3);
  CHECK(strstr(f.res.diag.reason, "PID-3: no repetition") != NULL);
  fx_free(&f);

  /* missing: clear. */
  REQUIRE(fx_compile(&f,
                     "channel:\n  routes:\n    - transform:\n"
                     "        - { select: PID-3, where: { 5: MR }, missing: clear }\n"
                     "      to: a\n") == 0);
  REQUIRE(fx_eval(&f, "MSH|^~\\&|A|B|C|D|1||ADT^A01|E5|P|2.5.1\nPID|1||9^^^X^PI||N\n") ==
          CAD_ROUTE_DELIVER);
  CHECK(strcmp(seg_of(&f, "PID"), "PID|1||||N") == 0);
  fx_free(&f);
}

TEST(select_compile_errors) {
  static const struct {
    const char *step, *err;
  } cases[] = {
      {"{ select: PID-3.1, where: { 4: EPI } }", "t.yaml:4:21: 'select' works on a whole field"},
      {"{ select: \"PID-3[2]\", where: { 4: EPI } }", "'select' works on a whole field"},
      {"{ select: PID-3 }", "'select' needs 'where'"},
      {"{ select: PID-3, where: { x: EPI } }", "t.yaml:4:37: 'where' keys are component numbers"},
      {"{ select: PID-3, where: { 4: { a: b } } }", "a value of 'where' is a string"},
      {"{ select: PID-3, where: { 4: EPI }, missing: drop }", "'missing' must be keep"},
      {"{ select: MSH-2, where: { 1: x } }", "MSH-1 and MSH-2 (the delimiters) cannot be changed"},
      {"{ select: PID-3, where: { 4: EPI }, to: x }", "unknown key 'to' in a 'select' step"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "channel:\n  routes:\n    - transform:\n        - %s\n      to: a\n", cases[i].step);
    fx_t f;
    CHECK(fx_compile(&f, yaml) == CAD_E_CONFIG);
    CHECK(has_error(&f, cases[i].err));
    fx_free(&f);
  }
}

/* ---- edits kept beside the message (routes_overlay.c) ---------------------
 *
 * A route whose steps only rewrite fields of segments the message has is
 * applied without a copy of the tree; these cases pin which routes take that
 * form and that it gives, byte for byte, what applying each step does. */

/* Does route i of `steps` (a transform list) take the overlay form? */
static int overlay_planned(const char *steps) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "tables:\n  loinc: { values: { GLU: 2345-7, K: 2823-3 } }\n"
           "channel:\n  routes:\n    - { transform: %s, to: a }\n",
           steps);
  fx_t f;
  if (fx_compile(&f, yaml) != 0) {
    fprintf(stderr, "  %s", fx_errors(&f));
    fx_free(&f);
    return -1;
  }
  int on = f.r->routes[0].overlay;
  fx_free(&f);
  return on;
}

TEST(overlay_planned_for_field_edits_only) {
  /* The lab-to-ehr route: sets, copies, a map, a date. */
  CHECK_INT(
      overlay_planned("[ { set: MSH-5, value: EHR }, { copy: OBX-3.1, to: \"OBX[*]-3.4\" },"
                      " { map: \"OBX[*]-3.1\", table: loinc }, { set: \"OBX[*]-3.3\", value: LN },"
                      " { format_date: OBR-7, precision: minute } ]"),
      1);
  /* Another segment read that no earlier step writes: still beside. */
  CHECK_INT(overlay_planned("[ { set: \"OBX[*]-18\", template: \"${MSH-10}\" } ]"), 1);
  /* ... but one an earlier run wrote must be read from the edited tree. */
  CHECK_INT(overlay_planned("[ { set: MSH-4, value: NEW }, { set: \"OBX[*]-4\", template: "
                            "\"${MSH-4}\" } ]"),
            0);
  /* Segments added, deleted or renamed, moves, clears, selects: the tree. */
  CHECK_INT(overlay_planned("[ { delete: NTE }, { set: \"OBX[*]-5\", value: x } ]"), 0);
  CHECK_INT(overlay_planned("[ { add: \"ZPI|1\" } ]"), 0);
  CHECK_INT(overlay_planned("[ { move: OBX-5, to: \"OBX[*]-7\" } ]"), 0);
  CHECK_INT(overlay_planned("[ { clear: \"OBX[*]-3.2\" } ]"), 0);
  CHECK_INT(overlay_planned("[ { set: \"PID-3[2].1\", value: x } ]"), 0);
}

/* Route `msg` (used as given: \n stays \n) with stepwise on or off. */
static void eval_raw(fx_t *f, const char *msg, bool stepwise, outcome_t *o) {
  memset(o, 0, sizeof *o);
  cad_routes_set_stepwise(f->r, stepwise);
  cad_arena_reset(&f->arena);
  o->rc = cad_routes_eval(f->r, msg, strlen(msg), NULL, &f->arena, &f->res);
  o->disposition = (int)f->res.disposition;
  o->nouts = f->res.nouts;
  snprintf(o->reason, sizeof o->reason, "%s", f->res.diag.reason);
  for (size_t i = 0; i < f->res.nouts; i++) {
    cad_str_t b = f->res.outs[i].bytes;
    REQUIRE(o->len + b.len + 1 <= sizeof o->bytes);
    o->bytes[o->len++] = (char)('0' + f->res.outs[i].dest);
    memcpy(o->bytes + o->len, b.p, b.len);
    o->len += b.len;
  }
}

/* The routes in `routes_yaml` (a list) give `want` (every output: the
 * destination index, then its bytes with \r shown as \n) both with the
 * overlay (when planned) and step by step. */
static void check_routes(const char *routes_yaml, const char *msg, const char *want) {
  char yaml[4096];
  snprintf(yaml, sizeof yaml,
           "tables:\n  loinc: { values: { GLU: 2345-7, K: 2823-3, \"A&B\": \"x^y\" } }\n"
           "channel:\n  routes: %s\n",
           routes_yaml);
  fx_t f;
  if (fx_compile(&f, yaml) != 0) {
    fprintf(stderr, "  %s", fx_errors(&f));
    CHECK(0);
    fx_free(&f);
    return;
  }
  static outcome_t a, b;
  eval_raw(&f, msg, false, &a);
  eval_raw(&f, msg, true, &b);
  bool same = a.rc == b.rc && a.disposition == b.disposition && a.len == b.len &&
              memcmp(a.bytes, b.bytes, a.len) == 0;
  if (!same)
    fprintf(stderr, "  %s\n  fused    [%.*s]\n  stepwise [%.*s]\n", routes_yaml, (int)a.len,
            a.bytes, (int)b.len, b.bytes);
  CHECK(same);
  for (size_t i = 0; i < a.len; i++)
    if (a.bytes[i] == '\r') a.bytes[i] = '\n';
  a.bytes[a.len] = 0;
  if (strcmp(a.bytes, want) != 0)
    fprintf(stderr, "  %s\n  got  [%s]\n  want [%s]\n", routes_yaml, a.bytes, want);
  CHECK(strcmp(a.bytes, want) == 0);
  fx_free(&f);
}

#define SMALL                                           \
  "MSH|^~\\&|LIS|LAB|EHR|HOSP|2024||ORU^R01|C1|P|2.5\r" \
  "OBR|1|O1|F1|BMP|||20240305121045\r"                  \
  "OBX|1|NM|GLU^Glucose^L||98\r"                        \
  "NTE|1||note\r"                                       \
  "OBX|2|NM|A\\T\\B^Gl\\T\\u^L~K^Pot||4.1\r"

TEST(overlay_edits_same_segment_twice) {
  /* Two runs on OBX with one on MSH between them: the second OBX run reads
   * the first one's edits. */
  check_routes(
      "[ { transform: [ { set: \"OBX[*]-5\", value: X }, { set: MSH-5, value: NEW },"
      " { copy: OBX-5, to: \"OBX[*]-3.2\" }, { set: \"OBX[*]-3.3\", value: LN } ], to: a } ]",
      SMALL,
      "0MSH|^~\\&|LIS|LAB|NEW|HOSP|2024||ORU^R01|C1|P|2.5\nOBR|1|O1|F1|BMP|||20240305121045\n"
      "OBX|1|NM|GLU^X^LN||X\nNTE|1||note\nOBX|2|NM|A\\T\\B^X^LN~K^Pot||X\n");
}

TEST(overlay_edit_then_filter_and_read) {
  /* Filters read the message as received: the second route still sees
   * MSH-5 EHR and makes its own copy. */
  check_routes(
      "[ { transform: [ { set: MSH-5, value: NEW } ], to: a, continue: true },"
      "  { when: { path: MSH-5, equals: EHR }, transform: [ { set: MSH-6, value: H2 } ],"
      " to: b } ]",
      "MSH|^~\\&|A|B|EHR|HOSP|2024||ORU^R01|C1|P|2.5\rOBX|1|NM|GLU||1\r",
      "0MSH|^~\\&|A|B|NEW|HOSP|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|GLU||1\n"
      "1MSH|^~\\&|A|B|EHR|H2|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|GLU||1\n");
  /* A later step reading a field an earlier one wrote, in another segment
   * (the tree) and in its own (the overlay). */
  check_routes(
      "[ { transform: [ { set: MSH-4, value: NEW }, { set: \"OBX[*]-4\", template: "
      "\"${MSH-4}\" } ], to: a } ]",
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\rOBX|1|NM|GLU||1\r",
      "0MSH|^~\\&|A|NEW|C|D|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|GLU|NEW|1\n");
  check_routes(
      "[ { transform: [ { map: \"OBX[*]-3.1\", table: loinc },"
      " { copy: OBX-3.1, to: \"OBX[*]-3.4\" } ], to: a } ]",
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\rOBX|1|NM|GLU^G||1\r",
      "0MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|2345-7^G^^2345-7||1\n");
}

TEST(overlay_add_remove_then_edit) {
  /* Deleting a segment, then editing: the tree. */
  check_routes(
      "[ { transform: [ { delete: NTE }, { set: \"OBX[*]-3.2\", value: g } ], to: a } ]", SMALL,
      "0MSH|^~\\&|LIS|LAB|EHR|HOSP|2024||ORU^R01|C1|P|2.5\nOBR|1|O1|F1|BMP|||20240305121045\n"
      "OBX|1|NM|GLU^g^L||98\nOBX|2|NM|A\\T\\B^g^L~K^Pot||4.1\n");
  /* A field of a segment the message lacks: the overlay gives up, the set
   * adds the segment, and the edit after it still applies. */
  check_routes(
      "[ { transform: [ { set: ZZZ-2, value: z }, { set: MSH-5, value: NEW },"
      " { set: \"OBX[*]-5\", value: v } ], to: a } ]",
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\rOBX|1|NM|GLU||1\r",
      "0MSH|^~\\&|A|B|NEW|D|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|GLU||v\nZZZ||z\n");
  /* A field after the segment's last one: empty fields up to it. */
  check_routes(
      "[ { transform: [ { set: \"OBX[*]-9.2\", value: far }, { set: MSH-13, value: q } ],"
      " to: a } ]",
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\rOBX|1|NM|GLU||1\r",
      "0MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5|q\nOBX|1|NM|GLU||1||||^far\n");
}

TEST(overlay_repetitions_escapes_terminators) {
  /* Components of the first repetition only; values escaped for the
   * message; an escaped key decoded before the lookup, the mapped value
   * escaped when written. */
  check_routes(
      "[ { transform: [ { set: \"OBX[*]-3.2\", value: \"a&b\" },"
      " { map: \"OBX[*]-3.1\", table: loinc } ], to: a } ]",
      SMALL,
      "0MSH|^~\\&|LIS|LAB|EHR|HOSP|2024||ORU^R01|C1|P|2.5\nOBR|1|O1|F1|BMP|||20240305121045\n"
      "OBX|1|NM|2345-7^a\\T\\b^L||98\nNTE|1||note\nOBX|2|NM|x\\S\\y^a\\T\\b^L~K^Pot||4.1\n");
  /* Other delimiters: field $, component %. */
  check_routes(
      "[ { transform: [ { set: \"OBX[*]-3.3\", value: \"L%1\" },"
      " { copy: OBX-3.1, to: \"OBX[*]-3.4\" } ], to: a } ]",
      "MSH$%~\\&$A$B$$$2024$$ORU%R01$C3$P$2.5\rOBX$1$NM$GLU%Glucose$$98\r",
      "0MSH$%~\\&$A$B$$$2024$$ORU%R01$C3$P$2.5\nOBX$1$NM$GLU%Glucose%L\\S\\1%GLU$$98\n");
  /* \n and \r\n terminators, no final terminator: every segment ends
   * with \r, as an edited tree is written. */
  check_routes("[ { transform: [ { set: \"OBX[*]-5\", value: v } ], to: a } ]",
               "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\r\nOBX|1|NM|GLU||1\nNTE|1||n",
               "0MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|GLU||v\nNTE|1||n\n");
  /* Nothing changed (a map that keeps an unknown code): the input itself. */
  check_routes("[ { transform: [ { map: \"OBX[*]-3.1\", table: loinc } ], to: a } ]",
               "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\rOBX|1|NM|NA||1",
               "0MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|NA||1");
}

/* A condition on a path without wildcards, or with [*] on the repetitions
 * of one occurrence, is resolved inline (routes_cond.c): it must read what
 * cad_hl7_get() and cad_hl7_iter_next() read, for every kind of path, absent
 * elements and other delimiters included. */
TEST(condition_paths_read_as_hl7_get) {
  static const char *const msgs[] = {
      ("MSH|^~\\&|A|B|C|D|2024||ORU^R01^X|C1|P|2.5\rPID|1||1^^^H&x&y^MR~2^^^Q||Do\\T\\e^J\r"
       "OBX|1|NM|GLU^G||98\rOBX|2||K\r"),
      "MSH$%~\\&$A$B$C$D$2024$$ORU%R01$C2$P$2.5\rPID$1$$7%%%H&u~8\r",
      "MSH|^|A|B|C|D|2024||ORU^R01|C3|P|2.5\rPID|1||5^6~7\r",
      /* fields longer than 16 and 32 bytes, separators on both sides of a
       * 16-byte boundary, empty repetitions (read 16 bytes at a time), and a
       * field at the very end of the message (one by one) */
      ("MSH|^~\\&|A|B|C|D|2024||ORU^R01|C4|P|2.5\r"
       "PID|1||123456789012345678^^^HOSPITAL_LONG_NAME^MR~abcdefghijklmnop^x^y^"
       "QQQQQQQQQQQQQQQQQQQQ^^z~~^^^W||Doe^J\r"
       "OBX|1|NM|ABCDEFGHIJKLMNOPQRSTUVWXYZ^Long name here^L||1\r"
       "OBX|2|NM|0123456789abcde^f\r"
       "PID|1||1^2^3^4~5^6^7^8"),
  };
  static const char *const paths[] = {
      "MSH-1",        "MSH-2",      "MSH-2.1",      "MSH-9",      "MSH-9.2",       "MSH-9.3",
      "MSH-9.4",      "PID-3",      "PID-3.1",      "PID-3.4",    "PID-3.4.2",     "PID-3.4.3",
      "PID-3.4.4",    "PID-3[2].1", "PID-3[3]",     "PID-5.1",    "PID-9",         "OBX[2]-3",
      "OBX[2]-4",     "OBX[3]-1",   "ZZZ-1",        "PID",        "PID-3[1]",      "PID-3[2]",
      "OBX[2]-3.1.1", "PID-3[*].4", "PID-3[*].4.2", "PID-3[*]",   "MSH-2[*]",      "MSH-9[*].2",
      "PID-9[*].1",   "ZZZ-3[*].1", "PID-5[*]",     "PID-3.2",    "PID-3.5",       "PID-3.6",
      "PID-3[*].1",   "PID-3[*].5", "PID-3[*].6",   "PID[2]-3.4", "PID[2]-3[*].4", "PID[2]-3[*].5",
      "OBX-3.2",      "OBX-3.3",    "OBX-3.4",      "OBX[2]-3.1", "OBX[2]-3.2",    "PID-3[*].4.1",
  };
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  int checked = 0;
  for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
      cad_arena_reset(&a);
      cad_hl7_msg_t m;
      REQUIRE(cad_hl7_parse(&m, msgs[i], strlen(msgs[i]), &a, NULL, NULL) == 0);
      cad_hl7_path_t p;
      if (cad_hl7_path_parse(paths[k], strlen(paths[k]), &p, NULL, NULL) != 0) continue;
      /* Every match the iterator gives (none: the absent value). */
      cad_hl7_iter_t it;
      cad_hl7_match_t mt;
      cad_hl7_iter_init(&it, &m, &p);
      bool more = cad_hl7_iter_next(&it, &mt);
      if (!more) cad_hl7_get(&m, &p, &mt);
      do {
        cad_str_t v;
        REQUIRE(cad_hl7_value(&p, &mt, &a, &v));
        /* equals that value, and exists or is empty as its kind says */
        char text[512];
        size_t n = 0;
        for (size_t j = 0; j < v.len && n + 2 < sizeof text - 64; j++) {
          if (v.p[j] == '\'') text[n++] = '\''; /* 'it''s' */
          text[n++] = v.p[j];
        }
        text[n] = 0;
        char cond[768];
        snprintf(cond, sizeof cond, "%s = '%s' and %s %s", paths[k], text, paths[k],
                 cad_hl7_kind(&mt) == CAD_HL7_VALUE ? "exists" : "empty");
        cad_route_cond_t *c = NULL;
        cad_buf_t err = CAD_BUF_INIT;
        if (cad_route_cond_parse(cond, NULL, &c, &err) != 0) {
          fprintf(stderr, "  %s: %s\n", cond, cad_buf_cstr(&err));
          CHECK(0);
        } else {
          int h = cad_route_cond_eval(c, &m, &a);
          if (h != 1) fprintf(stderr, "  message %zu: %s does not hold\n", i, cond);
          CHECK_INT(h, 1);
          checked++;
        }
        cad_route_cond_free(c);
        cad_buf_free(&err);
      } while (more && cad_hl7_iter_next(&it, &mt));
    }
  }
  CHECK(checked > 200);
  cad_arena_free(&a);
}

TEST_MAIN()
