/* test_hl7.c - unit tests of the HL7 v2 message tree (parsers/hl7/hl7.h).
 *
 * Written against the contract in hl7.h: parsing, delimiters, terminators,
 * paths, reading, escapes, editing, serialization, limits and diagnostics.
 * Every test owns one arena (or more) and frees it before returning.
 */
#include "hl7.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "harness.h"

/* ---- helpers ------------------------------------------------------------ */

/* Print a (pointer, length) string with control bytes escaped. */
static void put_esc(FILE *f, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\r') fputs("\\r", f);
    else if (c == '\n') fputs("\\n", f);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\x%02x", c);
    else fputc(c, f);
  }
}

static bool same(const char *p, size_t n, const char *w, size_t wn) {
  return n == wn && (n == 0 || memcmp(p, w, n) == 0);
}

static void report(int line, const char *what, const char *p, size_t n, const char *w, size_t wn) {
  fprintf(stderr, "  %s:%d: %s is \"", __FILE__, line, what);
  put_esc(stderr, p, n);
  fputs("\", expected \"", stderr);
  put_esc(stderr, w, wn);
  fputs("\"\n", stderr);
  cad_test_failures++;
}

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_at(int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  %s:%d: ", __FILE__, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  cad_test_failures++;
}

/* Parse a path that the test knows is valid; a failure is reported. */
static cad_hl7_path_t path_at(int line, const char *s) {
  cad_hl7_path_t p;
  memset(&p, 0, sizeof p);
  size_t pos = 0;
  const char *msg = NULL;
  int rc = cad_hl7_path_parse(s, strlen(s), &p, &pos, &msg);
  if (rc != 0) {
    fail_at(line, "path \"%s\" did not parse: rc %d at %zu (%s)", s, rc, pos, msg ? msg : "");
    memset(&p, 0, sizeof p);
    memcpy(p.seg, "???", 4);
  }
  return p;
}
#define PATH(s) path_at(__LINE__, (s))

/* Raw text of a path's first match, which must be present. */
static void check_raw_at(int line, const cad_hl7_msg_t *m, const char *ps, const char *want,
                         size_t wn) {
  cad_hl7_path_t p = path_at(line, ps);
  cad_hl7_match_t mt;
  memset(&mt, 0, sizeof mt);
  if (!cad_hl7_get(m, &p, &mt)) {
    fail_at(line, "%s is absent, expected raw \"%s\"", ps, want);
    return;
  }
  if (!mt.present) fail_at(line, "%s: get returned true but present == false", ps);
  if (!same(mt.raw.p, mt.raw.len, want, wn)) report(line, ps, mt.raw.p, mt.raw.len, want, wn);
}
#define CHECK_RAW(m, ps, want) check_raw_at(__LINE__, (m), (ps), (want), strlen(want))

/* Decoded value of a path's first match, which must be present. */
static void check_val_at(int line, const cad_hl7_msg_t *m, cad_arena_t *a, const char *ps,
                         const char *want, size_t wn) {
  cad_hl7_path_t p = path_at(line, ps);
  cad_hl7_match_t mt;
  memset(&mt, 0, sizeof mt);
  if (!cad_hl7_get(m, &p, &mt)) {
    fail_at(line, "%s is absent, expected \"%s\"", ps, want);
    return;
  }
  if (!mt.d) {
    fail_at(line, "%s: match has no delimiters", ps);
    return;
  }
  cad_str_t out = {NULL, 0};
  if (!cad_hl7_decode(mt.d, mt.raw, a, &out)) {
    fail_at(line, "%s: decode failed", ps);
    return;
  }
  if (!same(out.p, out.len, want, wn)) report(line, ps, out.p, out.len, want, wn);
}
#define CHECK_VAL(m, a, ps, want) check_val_at(__LINE__, (m), (a), (ps), (want), strlen(want))
#define CHECK_VALN(m, a, ps, want, n) check_val_at(__LINE__, (m), (a), (ps), (want), (n))

static void check_absent_at(int line, const cad_hl7_msg_t *m, const char *ps) {
  cad_hl7_path_t p = path_at(line, ps);
  cad_hl7_match_t mt;
  memset(&mt, 0, sizeof mt);
  bool got = cad_hl7_get(m, &p, &mt);
  if (got || mt.present) {
    fail_at(line, "%s should be absent (get %d, present %d, raw \"%.*s\")", ps, got, mt.present,
            (int)mt.raw.len, mt.raw.p ? mt.raw.p : "");
  } else if (mt.raw.len != 0) {
    fail_at(line, "%s absent but raw has length %zu", ps, mt.raw.len);
  }
}
#define CHECK_ABSENT(m, ps) check_absent_at(__LINE__, (m), (ps))

static void check_ser_at(int line, const cad_hl7_msg_t *m, const char *want, size_t wn) {
  cad_buf_t b = CAD_BUF_INIT;
  int rc = cad_hl7_serialize(m, &b);
  if (rc < 0) fail_at(line, "serialize failed: %d", rc);
  else if (!same(b.data, b.len, want, wn)) report(line, "serialized", b.data, b.len, want, wn);
  cad_buf_free(&b);
}
#define CHECK_SER(m, want) check_ser_at(__LINE__, (m), (want), strlen(want))

/* Serialize m and parse the result into m2 (with arena a2); the buffer is
 * returned (the caller frees it after m2). */
static int reparse(const cad_hl7_msg_t *m, cad_buf_t *b, cad_hl7_msg_t *m2, cad_arena_t *a2) {
  int rc = cad_hl7_serialize(m, b);
  if (rc < 0) return rc;
  return cad_hl7_parse(m2, b->data, b->len, a2, NULL, NULL);
}

static int set_at(int line, cad_hl7_msg_t *m, const char *ps, const char *v, unsigned flags) {
  cad_hl7_path_t p = path_at(line, ps);
  return cad_hl7_set(m, &p, v, strlen(v), flags);
}
#define SET(m, ps, v) set_at(__LINE__, (m), (ps), (v), 0)
#define SET_RAW(m, ps, v) set_at(__LINE__, (m), (ps), (v), CAD_HL7_SET_RAW)

static const char ADT[] =
    "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5\r"
    "EVN|A01|20240101120000\r"
    "PID|1||12345^^^HOSP^MR~67890^^^OTHER^PI||DOE^JOHN^Q||19800101|M\r"
    "PV1|1|I|W^389^1^UABH^^^^3\r";

static const char ADT_MSH[] =
    "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5";
static const char ADT_PID[] = "PID|1||12345^^^HOSP^MR~67890^^^OTHER^PI||DOE^JOHN^Q||19800101|M";

static const char ORU[] =
    "MSH|^~\\&|LAB|FAC|EHR|FAC|20240101||ORU^R01|7|P|2.5\r"
    "OBR|1\r"
    "OBX|1|ST|CODE1||alpha~beta\r"
    "OBX|2|ST|CODE2\r"
    "OBX|3|ST|CODE3||gamma\r";

/* Parse a NUL-terminated message with default limits. */
static int parse_s(cad_hl7_msg_t *m, const char *s, cad_arena_t *a, cad_hl7_diag_t *diag) {
  memset(m, 0, sizeof *m);
  return cad_hl7_parse(m, s, strlen(s), a, NULL, diag);
}

/* ---- parsing a standard message ----------------------------------------- */

TEST(parse_standard_segments) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t diag;
  memset(&diag, 0, sizeof diag);
  int rc = parse_s(&m, ADT, &a, &diag);
  CHECK_INT(rc, 0);
  if (rc == 0) {
    CHECK_INT(m.nsegs, 4);
    CHECK(m.input.p == ADT);
    CHECK_INT(m.input.len, strlen(ADT));
    CHECK(m.final_terminator);
    CHECK(!m.dirty);
    static const char *names[] = {"MSH", "EVN", "PID", "PV1"};
    for (uint32_t i = 0; i < 4 && i < m.nsegs; i++) {
      const cad_hl7_seg_t *s = cad_hl7_seg(&m, i);
      REQUIRE(s != NULL);
      CHECK_STR(s->name, names[i]);
      CHECK_INT(s->id, cad_hl7_segid(names[i]));
      CHECK_INT(s->header, i == 0);
      CHECK(!s->dirty);
    }
    CHECK(cad_hl7_seg(&m, 4) == NULL);
    CHECK(cad_hl7_seg(&m, UINT32_MAX) == NULL);
    /* raw spans exclude the terminator; offsets are byte offsets in the input */
    const cad_hl7_seg_t *msh = cad_hl7_seg(&m, 0), *pid = cad_hl7_seg(&m, 2);
    CHECK_STRN(msh->raw.p, msh->raw.len, ADT_MSH);
    CHECK_STRN(pid->raw.p, pid->raw.len, ADT_PID);
    CHECK(msh->raw.p == ADT);
    CHECK_INT(msh->offset, 0);
    CHECK_INT(cad_hl7_seg(&m, 1)->offset, strlen(ADT_MSH) + 1);
    CHECK_INT(pid->offset, (size_t)(strstr(ADT, "PID|") - ADT));
    CHECK_INT(cad_hl7_seg(&m, 3)->offset, (size_t)(strstr(ADT, "PV1|") - ADT));
    /* fields of a normal segment: span n is field n; nfields counts the id */
    CHECK_INT(pid->nfields, 9);
    CHECK_INT(cad_hl7_nfields(pid), 8);
    CHECK_STRN(pid->fields[0].p, pid->fields[0].len, "PID");
    CHECK_STRN(pid->fields[3].p, pid->fields[3].len, "12345^^^HOSP^MR~67890^^^OTHER^PI");
    /* field spans point into the input: no copy */
    CHECK(pid->fields[3].p >= ADT && pid->fields[3].p < ADT + sizeof ADT);
    /* header segment: span 1 is MSH-2, MSH-n is span n-1 */
    CHECK_INT(cad_hl7_nfields(msh), 12);
    CHECK_INT(msh->nfields, 12);
    CHECK_STRN(msh->fields[1].p, msh->fields[1].len, "^~\\&");
    CHECK_STRN(msh->fields[2].p, msh->fields[2].len, "SENDAPP");
  }
  cad_arena_free(&a);
}

TEST(parse_standard_fields_and_delims) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  const cad_hl7_seg_t *msh = cad_hl7_seg(&m, 0), *pid = cad_hl7_seg(&m, 2);
  cad_str_t f;
  CHECK(cad_hl7_field(msh, 1, &f));
  CHECK_STRN(f.p, f.len, "|");
  CHECK(f.p == ADT + 3); /* MSH-1 points into the input */
  CHECK(cad_hl7_field(msh, 2, &f));
  CHECK_STRN(f.p, f.len, "^~\\&");
  CHECK(cad_hl7_field(msh, 3, &f));
  CHECK_STRN(f.p, f.len, "SENDAPP");
  CHECK(cad_hl7_field(msh, 8, &f));
  CHECK_STRN(f.p, f.len, "");
  CHECK(cad_hl7_field(msh, 9, &f));
  CHECK_STRN(f.p, f.len, "ADT^A01^ADT_A01");
  CHECK(cad_hl7_field(msh, 12, &f));
  CHECK_STRN(f.p, f.len, "2.5");
  f.p = "junk";
  f.len = 4;
  CHECK(!cad_hl7_field(msh, 13, &f));
  CHECK_INT(f.len, 0);
  CHECK(cad_hl7_field(pid, 8, &f));
  CHECK_STRN(f.p, f.len, "M");
  CHECK(cad_hl7_field(pid, 2, &f));
  CHECK_STRN(f.p, f.len, "");
  f.len = 3;
  CHECK(!cad_hl7_field(pid, 9, &f));
  CHECK_INT(f.len, 0);

  /* delimiters, per message and per segment */
  CHECK_INT(m.d.field, '|');
  CHECK_INT(m.d.comp, '^');
  CHECK_INT(m.d.rep, '~');
  CHECK_INT(m.d.esc, '\\');
  CHECK_INT(m.d.sub, '&');
  CHECK_INT(m.d.trunc, 0);
  CHECK_INT(pid->d.field, '|');
  CHECK_INT(pid->d.sub, '&');
  CHECK_INT(cad_hl7_default_delims.field, '|');
  CHECK_INT(cad_hl7_default_delims.comp, '^');
  CHECK_INT(cad_hl7_default_delims.rep, '~');
  CHECK_INT(cad_hl7_default_delims.esc, '\\');
  CHECK_INT(cad_hl7_default_delims.sub, '&');
  CHECK_INT(cad_hl7_default_delims.trunc, 0);

  /* paths */
  CHECK_RAW(&m, "MSH-1", "|");
  CHECK_RAW(&m, "MSH-2", "^~\\&");
  CHECK_RAW(&m, "MSH-3", "SENDAPP");
  CHECK_RAW(&m, "MSH-9", "ADT^A01^ADT_A01");
  CHECK_RAW(&m, "MSH-9.1", "ADT");
  CHECK_RAW(&m, "MSH-9.2", "A01");
  CHECK_RAW(&m, "MSH-9.3", "ADT_A01");
  CHECK_ABSENT(&m, "MSH-9.4");
  CHECK_RAW(&m, "MSH-10", "MSG00001");
  CHECK_RAW(&m, "MSH-12", "2.5");
  CHECK_ABSENT(&m, "MSH-13");
  CHECK_RAW(&m, "EVN-1", "A01");
  CHECK_RAW(&m, "PID-3", "12345^^^HOSP^MR~67890^^^OTHER^PI");
  CHECK_RAW(&m, "PID-3[1]", "12345^^^HOSP^MR");
  CHECK_RAW(&m, "PID-3[2]", "67890^^^OTHER^PI");
  CHECK_ABSENT(&m, "PID-3[3]");
  CHECK_RAW(&m, "PID-3.1", "12345");
  CHECK_RAW(&m, "PID-3[2].1", "67890");
  CHECK_RAW(&m, "PID-3[2].4", "OTHER");
  CHECK_RAW(&m, "PID-3.2", "");
  CHECK_RAW(&m, "PID-3.4.1", "HOSP");
  CHECK_ABSENT(&m, "PID-3.4.2");
  CHECK_ABSENT(&m, "PID-3.6");
  CHECK_RAW(&m, "PID-5.2", "JOHN");
  CHECK_RAW(&m, "PID-8", "M");
  CHECK_ABSENT(&m, "PID-9");
  CHECK_RAW(&m, "PV1-3.8", "3");
  CHECK_ABSENT(&m, "PV1-3.9");
  CHECK_ABSENT(&m, "PV1[2]-1");
  CHECK_ABSENT(&m, "ZZZ-1");
  cad_arena_free(&a);
}

TEST(find_seg) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ORU, &a, NULL) == 0);
  uint32_t obx = cad_hl7_segid("OBX");
  CHECK_INT(cad_hl7_find_seg(&m, obx, 1, 0), 2);
  CHECK_INT(cad_hl7_find_seg(&m, obx, 2, 0), 3);
  CHECK_INT(cad_hl7_find_seg(&m, obx, 3, 0), 4);
  CHECK_INT(cad_hl7_find_seg(&m, obx, 4, 0), -1);
  CHECK_INT(cad_hl7_find_seg(&m, obx, 1, 3), 3);
  CHECK_INT(cad_hl7_find_seg(&m, obx, 2, 3), 4);
  CHECK_INT(cad_hl7_find_seg(&m, obx, 1, 5), -1);
  CHECK_INT(cad_hl7_find_seg(&m, cad_hl7_segid("MSH"), 1, 0), 0);
  CHECK_INT(cad_hl7_find_seg(&m, cad_hl7_segid("PID"), 1, 0), -1);
  CHECK_INT(cad_hl7_segid("PID"), ('P' << 16) | ('I' << 8) | 'D');
  cad_arena_free(&a);
}

TEST(pieces) {
  cad_str_t in = {"a^b^^d^", 7}, out;
  CHECK_INT(cad_hl7_npieces(in, '^'), 5);
  CHECK(cad_hl7_piece(in, '^', 1, &out));
  CHECK_STRN(out.p, out.len, "a");
  CHECK(out.p == in.p);
  CHECK(cad_hl7_piece(in, '^', 2, &out));
  CHECK_STRN(out.p, out.len, "b");
  CHECK(cad_hl7_piece(in, '^', 3, &out));
  CHECK_STRN(out.p, out.len, "");
  CHECK(cad_hl7_piece(in, '^', 4, &out));
  CHECK_STRN(out.p, out.len, "d");
  CHECK(cad_hl7_piece(in, '^', 5, &out));
  CHECK_STRN(out.p, out.len, "");
  CHECK(out.p == in.p + 7);
  out.len = 9;
  CHECK(!cad_hl7_piece(in, '^', 6, &out));
  CHECK_INT(out.len, 0);
  cad_str_t empty = {"", 0};
  CHECK_INT(cad_hl7_npieces(empty, '^'), 1);
  CHECK(cad_hl7_piece(empty, '^', 1, &out));
  CHECK_INT(out.len, 0);
  CHECK(!cad_hl7_piece(empty, '^', 2, &out));
  cad_str_t none = {"abc", 3};
  CHECK_INT(cad_hl7_npieces(none, '~'), 1);
  CHECK(cad_hl7_piece(none, '~', 1, &out));
  CHECK_STRN(out.p, out.len, "abc");
  /* the bytes after len are not part of the string */
  cad_str_t cut = {"ab^cd", 2};
  CHECK_INT(cad_hl7_npieces(cut, '^'), 1);
  CHECK(!cad_hl7_piece(cut, '^', 2, &out));
}

TEST(resolve_in_seg) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  const cad_hl7_seg_t *pid = cad_hl7_seg(&m, 2), *msh = cad_hl7_seg(&m, 0);
  cad_str_t out;
  cad_hl7_path_t p = PATH("PID-3[2].1");
  CHECK(cad_hl7_resolve_in_seg(pid, &p, 2, &out));
  CHECK_STRN(out.p, out.len, "67890");
  p = PATH("PID-3.4");
  CHECK(cad_hl7_resolve_in_seg(pid, &p, 1, &out));
  CHECK_STRN(out.p, out.len, "HOSP");
  /* the segment id of the path is ignored */
  p = PATH("ZZZ-5.1");
  CHECK(cad_hl7_resolve_in_seg(pid, &p, 1, &out));
  CHECK_STRN(out.p, out.len, "DOE");
  p = PATH("PID-3");
  CHECK(cad_hl7_resolve_in_seg(pid, &p, 0, &out));
  CHECK_STRN(out.p, out.len, "12345^^^HOSP^MR~67890^^^OTHER^PI");
  p = PATH("PID-20");
  out.len = 5;
  CHECK(!cad_hl7_resolve_in_seg(pid, &p, 0, &out));
  CHECK_INT(out.len, 0);
  /* MSH-1 and MSH-2 are never split */
  p = PATH("MSH-2");
  CHECK(cad_hl7_resolve_in_seg(msh, &p, 0, &out));
  CHECK_STRN(out.p, out.len, "^~\\&");
  p = PATH("MSH-1");
  CHECK(cad_hl7_resolve_in_seg(msh, &p, 0, &out));
  CHECK_STRN(out.p, out.len, "|");
  p = PATH("MSH-9.2");
  CHECK(cad_hl7_resolve_in_seg(msh, &p, 1, &out));
  CHECK_STRN(out.p, out.len, "A01");
  cad_arena_free(&a);
}

/* ---- delimiters ----------------------------------------------------------- */

TEST(custom_delims_dollar_percent) {
  static const char msg[] =
      "MSH$%~\\&$APP$FAC$$$20240101$$ADT%A01$1$P$2.5\r"
      "PID$1$$A%B~C%D$$EVERYWOMAN%EVE%E%%%L$x|y^z\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(m.nsegs, 2);
  CHECK_INT(m.d.field, '$');
  CHECK_INT(m.d.comp, '%');
  CHECK_INT(m.d.rep, '~');
  CHECK_INT(m.d.esc, '\\');
  CHECK_INT(m.d.sub, '&');
  CHECK_RAW(&m, "MSH-1", "$");
  CHECK_RAW(&m, "MSH-2", "%~\\&");
  CHECK_RAW(&m, "MSH-3", "APP");
  CHECK_RAW(&m, "MSH-9.1", "ADT");
  CHECK_RAW(&m, "MSH-9.2", "A01");
  CHECK_RAW(&m, "MSH-12", "2.5");
  CHECK_RAW(&m, "PID-3[2].2", "D");
  CHECK_RAW(&m, "PID-5.1", "EVERYWOMAN");
  CHECK_RAW(&m, "PID-5.2", "EVE");
  CHECK_RAW(&m, "PID-5.4", "");
  CHECK_RAW(&m, "PID-5.6", "L");
  /* the standard characters are plain data here */
  CHECK_RAW(&m, "PID-6", "x|y^z");
  CHECK_RAW(&m, "PID-6.1", "x|y^z");
  cad_arena_free(&a);
}

TEST(custom_delims_caret_field_sep) {
  /* field ^, component ~, repetition |, escape \, subcomponent & */
  static const char msg[] =
      "MSH^~|\\&^SENDER^FAC^^^20240101^^ADT~A24^42^P^2.4\r"
      "PID^1^^111~~~HOSP|222~~~OTHER^^DOE~JANE\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(m.d.field, '^');
  CHECK_INT(m.d.comp, '~');
  CHECK_INT(m.d.rep, '|');
  CHECK_RAW(&m, "MSH-1", "^");
  CHECK_RAW(&m, "MSH-2", "~|\\&");
  CHECK_RAW(&m, "MSH-3", "SENDER");
  CHECK_RAW(&m, "MSH-9", "ADT~A24");
  CHECK_RAW(&m, "MSH-9.2", "A24");
  CHECK_RAW(&m, "MSH-10", "42");
  CHECK_RAW(&m, "PID-3[2].4", "OTHER");
  CHECK_RAW(&m, "PID-3[1].1", "111");
  CHECK_RAW(&m, "PID-5.2", "JANE");
  cad_arena_free(&a);
}

TEST(custom_delims_underscore_and_bang) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  static const char u[] = "MSH_^~\\&_APP_FAC_____ACK_99_P_2.6.1_\rMSA_AA_99_\r";
  REQUIRE(parse_s(&m, u, &a, NULL) == 0);
  CHECK_INT(m.nsegs, 2);
  CHECK_INT(m.d.field, '_');
  CHECK_RAW(&m, "MSH-1", "_");
  CHECK_RAW(&m, "MSH-3", "APP");
  CHECK_RAW(&m, "MSH-9", "ACK");
  CHECK_RAW(&m, "MSH-12", "2.6.1");
  CHECK_RAW(&m, "MSH-13", "");
  CHECK_RAW(&m, "MSA-2", "99");
  CHECK_RAW(&m, "MSA-3", "");
  CHECK_ABSENT(&m, "MSA-4");
  cad_arena_reset(&a);
  static const char b[] = "MSH!^~\\&!APP!FAC!!!!!ADT^A01!5!P!2.5\rPID!1!!A^B\r";
  REQUIRE(parse_s(&m, b, &a, NULL) == 0);
  CHECK_INT(m.d.field, '!');
  CHECK_RAW(&m, "MSH-1", "!");
  CHECK_RAW(&m, "MSH-2", "^~\\&");
  CHECK_RAW(&m, "MSH-9.2", "A01");
  CHECK_RAW(&m, "PID-3.2", "B");
  cad_arena_free(&a);
}

TEST(custom_escape_char) {
  /* escape character # instead of backslash */
  static const char msg[] = "MSH|^~#&|APP\rNTE|1||a#F#b#S#c#E#d\\F\\e\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(m.d.esc, '#');
  CHECK_VAL(&m, &a, "NTE-3", "a|b^c#d\\F\\e");
  cad_arena_free(&a);
}

TEST(truncation_character) {
  static const char msg[] = "MSH|^~\\&#|APP|FAC|||||ORU^R01|1|P|2.7\rNTE|1||A\\P\\B#C\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(m.d.trunc, '#');
  CHECK_INT(m.d.sub, '&');
  CHECK_INT(m.d.esc, '\\');
  CHECK_RAW(&m, "MSH-2", "^~\\&#");
  CHECK_RAW(&m, "MSH-3", "APP");
  CHECK_RAW(&m, "MSH-9.2", "R01");
  CHECK_RAW(&m, "MSH-12", "2.7");
  /* \P\ is the truncation character; a bare # is plain data */
  CHECK_VAL(&m, &a, "NTE-3", "A#B#C");
  cad_arena_free(&a);
}

TEST(msh2_never_split) {
  /* MSH-2 holds the component and repetition characters; it is one value */
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  cad_hl7_path_t p = PATH("MSH-2");
  cad_hl7_iter_t it;
  cad_hl7_match_t mt;
  cad_hl7_iter_init(&it, &m, &p);
  int n = 0;
  while (cad_hl7_iter_next(&it, &mt)) {
    n++;
    CHECK(mt.present);
    CHECK_STRN(mt.raw.p, mt.raw.len, "^~\\&");
  }
  CHECK_INT(n, 1);
  /* its value is not decoded either: "\&" is not an escape of this message */
  CHECK_VAL(&m, &a, "MSH-2", "^~\\&");
  cad_arena_free(&a);
}

TEST(short_encoding_characters) {
  /* three encoding characters: no subcomponent separator */
  static const char msg[] = "MSH|^~}|ADM|X|||199401011200||BAR^P01|1|P|2.1\rPID|1||A&B^C\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(m.d.esc, '}');
  CHECK_INT(m.d.sub, 0);
  CHECK_INT(m.d.trunc, 0);
  CHECK_RAW(&m, "MSH-2", "^~}");
  CHECK_RAW(&m, "MSH-3", "ADM");
  CHECK_RAW(&m, "PID-3.1", "A&B");
  CHECK_ABSENT(&m, "PID-3.1.2");
  CHECK_RAW(&m, "PID-3.2", "C");
  cad_arena_free(&a);
}

TEST(batch_segments_use_their_header_delims) {
  static const char msg[] =
      "FHS|^~\\&|FAPP\r"
      "BHS:-+?*:BAPP:BFAC\r"
      "MSH$%~\\&$M2\r"
      "PID$1$$C%D\r"
      "MSH|^~\\&|MAPP|MFAC|||||ADT^A04|1|P|2.5\r"
      "PID|1||A^B\r"
      "BTS|2\r"
      "FTS|1\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(m.nsegs, 8);
  static const char *names[] = {"FHS", "BHS", "MSH", "PID", "MSH", "PID", "BTS", "FTS"};
  for (uint32_t i = 0; i < m.nsegs && i < 8; i++) {
    CHECK_STR(m.segs[i].name, names[i]);
    CHECK_INT(m.segs[i].header, i == 0 || i == 1 || i == 2 || i == 4);
  }
  CHECK_INT(m.d.field, '|'); /* the first header's */
  CHECK_INT(m.segs[1].d.field, ':');
  CHECK_INT(m.segs[1].d.comp, '-');
  CHECK_INT(m.segs[3].d.field, '$');
  CHECK_INT(m.segs[3].d.comp, '%');
  CHECK_INT(m.segs[5].d.field, '|');
  CHECK_INT(m.segs[5].d.comp, '^');
  CHECK_INT(m.segs[6].d.field, '|');
  CHECK_RAW(&m, "FHS-3", "FAPP");
  CHECK_RAW(&m, "BHS-1", ":");
  CHECK_RAW(&m, "BHS-2", "-+?*");
  CHECK_RAW(&m, "BHS-3", "BAPP");
  CHECK_RAW(&m, "BHS-4", "BFAC");
  CHECK_RAW(&m, "MSH-1", "$");
  CHECK_RAW(&m, "MSH-3", "M2");
  CHECK_RAW(&m, "MSH[2]-1", "|");
  CHECK_RAW(&m, "MSH[2]-3", "MAPP");
  CHECK_RAW(&m, "MSH[2]-9.2", "A04");
  CHECK_RAW(&m, "PID-3.2", "D");
  CHECK_RAW(&m, "PID[2]-3.2", "B");
  CHECK_RAW(&m, "BTS-1", "2");
  CHECK_RAW(&m, "FTS-1", "1");
  cad_arena_free(&a);
}

/* ---- terminators ----------------------------------------------------------- */

static void check_three_segs(const char *msg, bool final_term) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  int rc = parse_s(&m, msg, &a, NULL);
  CHECK_INT(rc, 0);
  if (rc == 0) {
    CHECK_INT(m.nsegs, 3);
    CHECK_INT(m.final_terminator, final_term);
    if (m.nsegs == 3) {
      CHECK_STRN(m.segs[0].raw.p, m.segs[0].raw.len, "MSH|^~\\&|A|B");
      CHECK_STRN(m.segs[1].raw.p, m.segs[1].raw.len, "PID|1||X^Y");
      CHECK_STRN(m.segs[2].raw.p, m.segs[2].raw.len, "PV1|1|I");
      CHECK_INT(m.segs[1].offset, (size_t)(strstr(msg, "PID") - msg));
      CHECK_INT(m.segs[2].offset, (size_t)(strstr(msg, "PV1") - msg));
    }
    CHECK_RAW(&m, "MSH-4", "B");
    CHECK_RAW(&m, "PID-3.2", "Y");
    CHECK_RAW(&m, "PV1-2", "I");
  }
  cad_arena_free(&a);
}

TEST(terminators) {
  check_three_segs("MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I\r", true);
  check_three_segs("MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I", false);
  check_three_segs("MSH|^~\\&|A|B\nPID|1||X^Y\nPV1|1|I\n", true);
  check_three_segs("MSH|^~\\&|A|B\nPID|1||X^Y\nPV1|1|I", false);
  check_three_segs("MSH|^~\\&|A|B\r\nPID|1||X^Y\r\nPV1|1|I\r\n", true);
  check_three_segs("MSH|^~\\&|A|B\r\nPID|1||X^Y\r\nPV1|1|I", false);
  check_three_segs("MSH|^~\\&|A|B\r\nPID|1||X^Y\rPV1|1|I\n", true);
}

TEST(empty_lines_between_segments) {
  check_three_segs("MSH|^~\\&|A|B\r\rPID|1||X^Y\r\r\rPV1|1|I\r", true);
  check_three_segs("MSH|^~\\&|A|B\n\nPID|1||X^Y\nPV1|1|I\n\n", true);
  check_three_segs("MSH|^~\\&|A|B\r\n\r\nPID|1||X^Y\r\n\r\nPV1|1|I", false);
}

/* ---- iteration, absent / empty / null --------------------------------------- */

TEST(iterator_one_match_per_segment) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ORU, &a, NULL) == 0);
  cad_hl7_path_t p = PATH("OBX[*]-5");
  CHECK_INT(p.occ, CAD_HL7_ALL);
  cad_hl7_iter_t it;
  cad_hl7_match_t mt[8];
  cad_hl7_iter_init(&it, &m, &p);
  int n = 0;
  while (n < 8 && cad_hl7_iter_next(&it, &mt[n])) n++;
  REQUIRE(n == 3);
  CHECK(mt[0].present);
  CHECK_STRN(mt[0].raw.p, mt[0].raw.len, "alpha~beta");
  CHECK_INT(mt[0].seg_index, 2);
  CHECK_INT(mt[0].occ, 1);
  CHECK(!mt[1].present);
  CHECK_INT(mt[1].raw.len, 0);
  CHECK_INT(mt[1].seg_index, 3);
  CHECK_INT(mt[1].occ, 2);
  CHECK_INT(cad_hl7_kind(&mt[1]), CAD_HL7_ABSENT);
  CHECK(mt[2].present);
  CHECK_STRN(mt[2].raw.p, mt[2].raw.len, "gamma");
  CHECK_INT(mt[2].seg_index, 4);
  CHECK_INT(mt[2].occ, 3);
  CHECK(mt[2].d != NULL && mt[2].d->field == '|');
  /* the iterator stays finished */
  CHECK(!cad_hl7_iter_next(&it, &mt[3]));

  /* a segment that does not occur yields nothing */
  p = PATH("ZZZ[*]-1");
  cad_hl7_iter_init(&it, &m, &p);
  CHECK(!cad_hl7_iter_next(&it, &mt[0]));
  /* neither does an occurrence beyond the last */
  p = PATH("OBX[4]-1");
  cad_hl7_iter_init(&it, &m, &p);
  CHECK(!cad_hl7_iter_next(&it, &mt[0]));
  CHECK(!cad_hl7_get(&m, &p, &mt[0]));
  /* a path without wildcards has one match */
  p = PATH("OBX[2]-3");
  cad_hl7_iter_init(&it, &m, &p);
  n = 0;
  while (n < 8 && cad_hl7_iter_next(&it, &mt[n])) n++;
  CHECK_INT(n, 1);
  CHECK_STRN(mt[0].raw.p, mt[0].raw.len, "CODE2");
  CHECK_INT(mt[0].occ, 2);
  CHECK_INT(mt[0].seg_index, 3);
  /* get takes the first match */
  p = PATH("OBX[*]-3");
  CHECK(cad_hl7_get(&m, &p, &mt[0]));
  CHECK_STRN(mt[0].raw.p, mt[0].raw.len, "CODE1");
  cad_arena_free(&a);
}

TEST(iterator_repetitions) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  cad_hl7_path_t p = PATH("PID-3[*].1");
  CHECK_INT(p.rep, CAD_HL7_ALL);
  cad_hl7_iter_t it;
  cad_hl7_match_t mt[8];
  cad_hl7_iter_init(&it, &m, &p);
  int n = 0;
  while (n < 8 && cad_hl7_iter_next(&it, &mt[n])) n++;
  REQUIRE(n == 2);
  CHECK_STRN(mt[0].raw.p, mt[0].raw.len, "12345");
  CHECK_INT(mt[0].rep, 1);
  CHECK_STRN(mt[1].raw.p, mt[1].raw.len, "67890");
  CHECK_INT(mt[1].rep, 2);
  CHECK_INT(mt[1].seg_index, 2);
  /* whole-field match reports rep 0 */
  p = PATH("PID-3");
  CHECK(cad_hl7_get(&m, &p, &mt[0]));
  CHECK_INT(mt[0].rep, 0);
  cad_arena_reset(&a);

  /* both wildcards: every repetition of every OBX, one absent match for OBX 2 */
  REQUIRE(parse_s(&m, ORU, &a, NULL) == 0);
  p = PATH("OBX[*]-5[*]");
  cad_hl7_iter_init(&it, &m, &p);
  n = 0;
  while (n < 8 && cad_hl7_iter_next(&it, &mt[n])) n++;
  REQUIRE(n == 4);
  CHECK_STRN(mt[0].raw.p, mt[0].raw.len, "alpha");
  CHECK_INT(mt[0].occ, 1);
  CHECK_STRN(mt[1].raw.p, mt[1].raw.len, "beta");
  CHECK_INT(mt[1].rep, 2);
  CHECK(!mt[2].present);
  CHECK_INT(mt[2].occ, 2);
  CHECK_STRN(mt[3].raw.p, mt[3].raw.len, "gamma");
  CHECK_INT(mt[3].occ, 3);
  cad_arena_free(&a);
}

TEST(kind_absent_empty_null) {
  static const char msg[] = "MSH|^~\\&|A\rPID|1||\"\"|\"\"^X|\"\"\"|\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  struct {
    const char *path;
    cad_hl7_kind_t kind;
  } cases[] = {
      {"PID-1", CAD_HL7_VALUE},     {"PID-2", CAD_HL7_EMPTY},    {"PID-3", CAD_HL7_NULL},
      {"PID-4.1", CAD_HL7_NULL},    {"PID-4", CAD_HL7_VALUE},    {"PID-4.2", CAD_HL7_VALUE},
      {"PID-5", CAD_HL7_VALUE},     {"PID-6", CAD_HL7_EMPTY},    {"PID-7", CAD_HL7_ABSENT},
      {"PID-3.2", CAD_HL7_ABSENT},  {"PID-4.3", CAD_HL7_ABSENT}, {"ZZZ-1", CAD_HL7_ABSENT},
      {"PID[2]-1", CAD_HL7_ABSENT},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cad_hl7_path_t p = PATH(cases[i].path);
    cad_hl7_match_t mt;
    memset(&mt, 0, sizeof mt);
    bool got = cad_hl7_get(&m, &p, &mt);
    CHECK_INT(got, cases[i].kind != CAD_HL7_ABSENT);
    if (cad_hl7_kind(&mt) != cases[i].kind) {
      fprintf(stderr, "  %s: kind %d, expected %d\n", cases[i].path, (int)cad_hl7_kind(&mt),
              (int)cases[i].kind);
      cad_test_failures++;
    }
  }
  cad_arena_free(&a);
}

/* ---- escapes ---------------------------------------------------------------- */

static void check_unescape_at(int line, const cad_hl7_delims_t *d, const char *raw,
                              const char *want, size_t wn) {
  size_t n = strlen(raw);
  char *out = malloc(n + 1);
  if (!out) return;
  size_t got = cad_hl7_unescape(d, (cad_str_t){raw, n}, out);
  if (got > n) fail_at(line, "unescape of \"%s\" lengthened it (%zu > %zu)", raw, got, n);
  else if (!same(out, got, want, wn)) report(line, raw, out, got, want, wn);
  /* cad_hl7_decode agrees */
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_str_t dec = {NULL, 0};
  if (!cad_hl7_decode(d, (cad_str_t){raw, n}, &a, &dec))
    fail_at(line, "decode of \"%s\" failed", raw);
  else if (!same(dec.p, dec.len, want, wn)) report(line, raw, dec.p, dec.len, want, wn);
  cad_arena_free(&a);
  free(out);
}
#define CHECK_UNESC(d, raw, want) check_unescape_at(__LINE__, (d), (raw), (want), strlen(want))
#define CHECK_UNESCN(d, raw, want, n) check_unescape_at(__LINE__, (d), (raw), (want), (n))

TEST(unescape_delimiters) {
  const cad_hl7_delims_t *d = &cad_hl7_default_delims;
  CHECK_UNESC(d, "a\\F\\b", "a|b");
  CHECK_UNESC(d, "a\\S\\b", "a^b");
  CHECK_UNESC(d, "a\\T\\b", "a&b");
  CHECK_UNESC(d, "a\\R\\b", "a~b");
  CHECK_UNESC(d, "a\\E\\b", "a\\b");
  CHECK_UNESC(d, "\\F\\\\S\\\\T\\\\R\\\\E\\", "|^&~\\");
  CHECK_UNESC(d, "\\E\\F\\E\\", "\\F\\"); /* an escaped escape is not re-read */
  CHECK_UNESC(d, "plain text", "plain text");
  CHECK_UNESC(d, "", "");
  cad_hl7_delims_t c = {'$', '%', '!', '?', '*', '#'};
  CHECK_UNESC(&c, "?F??S??T??R??E??P?", "$%*!?#");
  CHECK_UNESC(&c, "\\F\\", "\\F\\"); /* backslash is plain data here */
}

TEST(unescape_hex) {
  const cad_hl7_delims_t *d = &cad_hl7_default_delims;
  CHECK_UNESC(d, "a\\X0D\\b", "a\rb");
  CHECK_UNESC(d, "\\X0A\\", "\n");
  CHECK_UNESC(d, "\\X0D0A\\", "\r\n");
  CHECK_UNESC(d, "caf\\Xc3a9\\", "caf\xc3\xa9");
  CHECK_UNESC(d, "\\XC3A9\\", "\xc3\xa9");
  CHECK_UNESC(d, "\\X41424344\\", "ABCD");
  CHECK_UNESCN(d, "x\\X00\\y", "x\0y", 3);
}

TEST(unescape_keeps_formatting_and_unknown) {
  const cad_hl7_delims_t *d = &cad_hl7_default_delims;
  const char *verbatim[] = {
      "line1\\.br\\line2",
      "\\.sp2\\",
      "\\.in+4\\",
      "\\.ti-2\\",
      "\\.sk5\\",
      "\\.ce\\",
      "\\.fi\\",
      "\\.nf\\",
      "\\H\\bold\\N\\",
      "\\C2842\\",
      "\\M244241\\",
      "\\Zvendor\\",
      "\\a\\",
      "\\Q\\",
      "abc\\",
      "abc\\F",
      "\\X0\\",
      "\\XGG\\",
      "\\X0D",
      "\\",
      "a\\b",
  };
  for (size_t i = 0; i < sizeof verbatim / sizeof verbatim[0]; i++)
    CHECK_UNESC(d, verbatim[i], verbatim[i]);
  /* a known escape after a kept one is still decoded */
  CHECK_UNESC(d, "\\H\\x\\F\\y\\N\\", "\\H\\x|y\\N\\");
}

TEST(needs_unescape_and_decode_without_copy) {
  const cad_hl7_delims_t *d = &cad_hl7_default_delims;
  CHECK(!cad_hl7_needs_unescape(d, (cad_str_t){"abc^def", 7}));
  CHECK(cad_hl7_needs_unescape(d, (cad_str_t){"a\\F\\b", 5}));
  CHECK(!cad_hl7_needs_unescape(d, (cad_str_t){"a\\F\\b", 1}));
  cad_hl7_delims_t none = cad_hl7_default_delims;
  none.esc = 0;
  CHECK(!cad_hl7_needs_unescape(&none, (cad_str_t){"a\\F\\b", 5}));
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  static const char plain[] = "no escapes here";
  cad_str_t out = {NULL, 0};
  CHECK(cad_hl7_decode(d, (cad_str_t){plain, sizeof plain - 1}, &a, &out));
  CHECK(out.p == plain);
  CHECK_INT(out.len, sizeof plain - 1);
  /* no escape character declared: nothing is decoded */
  CHECK(cad_hl7_decode(&none, (cad_str_t){"a\\F\\b", 5}, &a, &out));
  CHECK_STRN(out.p, out.len, "a\\F\\b");
  cad_arena_free(&a);
}

TEST(decode_through_message) {
  static const char msg[] =
      "MSH|^~\\&|\\F\\|B\rOBX|1|TX|C||A\\S\\B\\T\\C^L1\\X0D\\L2\\.br\\^caf\\Xc3a9\\~\\H\\hi\\N\\\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_VAL(&m, &a, "MSH-3", "|");
  CHECK_VAL(&m, &a, "OBX-5.1", "A^B&C");
  CHECK_VAL(&m, &a, "OBX-5.2", "L1\rL2\\.br\\");
  CHECK_VAL(&m, &a, "OBX-5.3", "caf\xc3\xa9");
  CHECK_VAL(&m, &a, "OBX-5[2]", "\\H\\hi\\N\\");
  CHECK_RAW(&m, "OBX-5[1].1", "A\\S\\B\\T\\C");
  cad_arena_free(&a);
}

TEST(escape_encodes_delimiters) {
  const cad_hl7_delims_t *d = &cad_hl7_default_delims;
  char out[128];
  static const char in[] = "a|b^c&d~e\\f\rg\nh#";
  size_t n = cad_hl7_escape(d, in, sizeof in - 1, out);
  CHECK_STRN(out, n, "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0D\\g\\X0A\\h#");
  cad_hl7_delims_t t = cad_hl7_default_delims;
  t.trunc = '#';
  n = cad_hl7_escape(&t, "x#y", 3, out);
  CHECK_STRN(out, n, "x\\P\\y");
  cad_hl7_delims_t c = {'$', '%', '!', '?', '*', 0};
  n = cad_hl7_escape(&c, "$%!?*|^", 7, out);
  CHECK_STRN(out, n, "?F??S??R??E??T?|^");
  n = cad_hl7_escape(d, "", 0, out);
  CHECK_INT(n, 0);
}

TEST(escape_round_trip) {
  /* every byte value, through escape then unescape, with and without #. */
  char in[256 * 2];
  for (int i = 0; i < 256; i++) {
    in[i] = (char)i;
    in[256 + i] = (char)(255 - i);
  }
  cad_hl7_delims_t ds[3] = {
      cad_hl7_default_delims, cad_hl7_default_delims, {'$', '%', '!', '?', '*', '#'}};
  ds[1].trunc = '#';
  for (int k = 0; k < 3; k++) {
    const cad_hl7_delims_t *d = &ds[k];
    char *enc = malloc(5 * sizeof in);
    char *dec = malloc(5 * sizeof in);
    REQUIRE(enc && dec);
    size_t n = cad_hl7_escape(d, in, sizeof in, enc);
    CHECK(n <= 5 * sizeof in);
    /* no delimiter is left bare, apart from the escape character's own use */
    for (size_t i = 0; i < n; i++) {
      char ch = enc[i];
      if (ch == d->field || ch == d->comp || ch == d->rep || ch == d->sub || ch == '\r' ||
          ch == '\n' || (d->trunc && ch == d->trunc)) {
        fprintf(stderr, "  delims %d: bare delimiter 0x%02x at %zu in escaped text\n", k,
                (unsigned char)ch, i);
        cad_test_failures++;
        break;
      }
    }
    size_t m = cad_hl7_unescape(d, (cad_str_t){enc, n}, dec);
    CHECK_INT(m, sizeof in);
    CHECK(m == sizeof in && memcmp(dec, in, m) == 0);
    free(enc);
    free(dec);
  }
}

/* ---- paths ------------------------------------------------------------------- */

TEST(path_parse_valid) {
  static const struct {
    const char *s;
    const char *seg;
    int occ, field, rep, comp, sub;
  } ok[] = {
      {"PID-3", "PID", 1, 3, 0, 0, 0},
      {"PID-3[2]", "PID", 1, 3, 2, 0, 0},
      {"PID-3[2].1", "PID", 1, 3, 2, 1, 0},
      {"PID-5.1.2", "PID", 1, 5, 1, 1, 2},
      {"PID-5.1", "PID", 1, 5, 1, 1, 0},
      {"PID-3[1]", "PID", 1, 3, 1, 0, 0},
      {"OBX[3]-5", "OBX", 3, 5, 0, 0, 0},
      {"OBX[*]-5", "OBX", CAD_HL7_ALL, 5, 0, 0, 0},
      {"PID-3[*].1", "PID", 1, 3, CAD_HL7_ALL, 1, 0},
      {"OBX[*]-5[*]", "OBX", CAD_HL7_ALL, 5, CAD_HL7_ALL, 0, 0},
      {"OBX[12]-5[3].2.1", "OBX", 12, 5, 3, 2, 1},
      {"MSH-9.2", "MSH", 1, 9, 1, 2, 0},
      {"MSH-1", "MSH", 1, 1, 0, 0, 0},
      {"PID", "PID", 1, 0, 0, 0, 0},
      {"PID[2]", "PID", 2, 0, 0, 0, 0},
      {"pid-3", "PID", 1, 3, 0, 0, 0},
      {"Nk1-2.1", "NK1", 1, 2, 1, 1, 0},
      {"ZX9-120", "ZX9", 1, 120, 0, 0, 0},
      {"IN1[10]-49[100].99.98", "IN1", 10, 49, 100, 99, 98},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    cad_hl7_path_t p;
    memset(&p, 0x5a, sizeof p);
    size_t pos = 12345;
    const char *msg = NULL;
    int rc = cad_hl7_path_parse(ok[i].s, strlen(ok[i].s), &p, &pos, &msg);
    if (rc != 0) {
      fprintf(stderr, "  path \"%s\": rc %d at %zu (%s)\n", ok[i].s, rc, pos, msg ? msg : "");
      cad_test_failures++;
      continue;
    }
    if (memcmp(p.seg, ok[i].seg, 4) != 0 || p.segid != cad_hl7_segid(ok[i].seg) ||
        p.occ != ok[i].occ || p.field != ok[i].field || p.rep != ok[i].rep ||
        p.comp != ok[i].comp || p.sub != ok[i].sub) {
      fprintf(stderr,
              "  path \"%s\": got seg %.3s occ %d field %d rep %d comp %d sub %d, expected "
              "%s %d %d %d %d %d\n",
              ok[i].s, p.seg, p.occ, p.field, p.rep, p.comp, p.sub, ok[i].seg, ok[i].occ,
              ok[i].field, ok[i].rep, ok[i].comp, ok[i].sub);
      cad_test_failures++;
    }
  }
  /* errpos and errmsg may be NULL */
  cad_hl7_path_t p;
  CHECK_INT(cad_hl7_path_parse("PID-3", 5, &p, NULL, NULL), 0);
  /* only len bytes are read: the string need not be NUL-terminated */
  static const char notnul[7] = {'P', 'I', 'D', '-', '3', '.', '1'};
  CHECK_INT(cad_hl7_path_parse(notnul, 5, &p, NULL, NULL), 0);
  CHECK_INT(p.field, 3);
  CHECK_INT(p.comp, 0);
  CHECK_INT(cad_hl7_path_parse(notnul, 7, &p, NULL, NULL), 0);
  CHECK_INT(p.comp, 1);
}

TEST(path_parse_errors) {
  static const struct {
    const char *s;
    size_t pos;
  } bad[] = {
      {"", 0},            /* empty */
      {"PID-", 4},        /* missing field number */
      {"PID-0", 4},       /* indexes are 1-based; the whole segment is "PID" */
      {"PI-3", 2},        /* id of two characters */
      {"P-D-3", 1},       /* '-' inside the id */
      {"PIDX-3", 3},      /* id of four characters */
      {"PI$-3", 2},       /* id character outside [A-Z0-9] */
      {"PID-3[", 6},      /* unterminated index */
      {"PID-3[x]", 6},    /* non-numeric index */
      {"PID-3[2", 7},     /* missing ']' */
      {"PID-3[0]", 6},    /* zero repetition */
      {"PID[0]-3", 4},    /* zero occurrence */
      {"PID[*", 5},       /* missing ']' after '*' */
      {"PID-3..1", 6},    /* empty component */
      {"PID-3.", 6},      /* trailing dot */
      {"PID-3.0", 6},     /* zero component */
      {"PID-3.1.0", 8},   /* zero subcomponent */
      {"PID-3.*", 6},     /* no wildcard for components */
      {"PID-3.1.2.3", 9}, /* deeper than a subcomponent */
      {"PID-3x", 5},      /* trailing garbage */
      {"PID-3 ", 5},      /* trailing space */
      {"PID-3]", 5},      /* stray bracket */
      {"PID3", 3},        /* missing '-' */
      {"PID-a", 4},       /* non-numeric field */
      {"PID--3", 4},      /* negative-looking field */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cad_hl7_path_t p;
    size_t pos = 9999;
    const char *msg = NULL;
    int rc = cad_hl7_path_parse(bad[i].s, strlen(bad[i].s), &p, &pos, &msg);
    if (rc != CAD_E_PATH) {
      fprintf(stderr, "  path \"%s\": rc %d, expected CAD_E_PATH\n", bad[i].s, rc);
      cad_test_failures++;
      continue;
    }
    if (pos != bad[i].pos) {
      fprintf(stderr, "  path \"%s\": error at %zu, expected %zu (%s)\n", bad[i].s, pos, bad[i].pos,
              msg ? msg : "(no message)");
      cad_test_failures++;
    }
    if (!msg || !*msg) {
      fprintf(stderr, "  path \"%s\": no error message\n", bad[i].s);
      cad_test_failures++;
    }
  }
  /* an index too large for an int is an error, not a wrap-around */
  static const char *huge[] = {"PID-99999999999999999999", "PID-3[4294967297]", "PID-2147483648",
                               "OBX[99999999999]-5"};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    cad_hl7_path_t p;
    size_t pos = 9999;
    int rc = cad_hl7_path_parse(huge[i], strlen(huge[i]), &p, &pos, NULL);
    if (rc != CAD_E_PATH || pos > strlen(huge[i])) {
      fprintf(stderr, "  path \"%s\": rc %d pos %zu, expected CAD_E_PATH\n", huge[i], rc, pos);
      cad_test_failures++;
    }
  }
  /* a NULL errpos/errmsg is allowed on error too */
  cad_hl7_path_t p;
  CHECK_INT(cad_hl7_path_parse("PID-", 4, &p, NULL, NULL), CAD_E_PATH);
}

TEST(path_format) {
  static const char *canon[] = {"PID-3",       "PID-3[2]",         "PID-3[2].1",
                                "OBX[3]-5",    "OBX[*]-5",         "PID-3[*].1",
                                "OBX[*]-5[*]", "OBX[12]-5[3].2.1", "PID"};
  for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
    cad_hl7_path_t p = PATH(canon[i]);
    char buf[64];
    size_t n = cad_hl7_path_format(&p, buf, sizeof buf);
    CHECK_INT(n, strlen(canon[i]));
    CHECK_STR(buf, canon[i]);
  }
  /* every valid form formats to something that parses back to the same path */
  static const char *forms[] = {"PID-5.1.2",  "MSH-9.2", "pid-3[1]",
                                "PID[2]",     "Nk1-2.1", "IN1[10]-49[100].99.98",
                                "PID-3[1].1", "OBX[1]-1"};
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    cad_hl7_path_t p = PATH(forms[i]), q;
    char buf[64];
    size_t n = cad_hl7_path_format(&p, buf, sizeof buf);
    CHECK(n < sizeof buf && n == strlen(buf));
    memset(&q, 0, sizeof q);
    int rc = cad_hl7_path_parse(buf, n, &q, NULL, NULL);
    if (rc != 0 || memcmp(q.seg, p.seg, 4) != 0 || q.segid != p.segid || q.occ != p.occ ||
        q.field != p.field || q.rep != p.rep || q.comp != p.comp || q.sub != p.sub) {
      fprintf(stderr, "  \"%s\" formats to \"%s\", which does not parse back the same\n", forms[i],
              buf);
      cad_test_failures++;
    }
  }
  /* truncation: NUL-terminated prefix, returns the length it needed */
  cad_hl7_path_t p = PATH("PID-3[2].1");
  char small[5];
  memset(small, 'x', sizeof small);
  size_t n = cad_hl7_path_format(&p, small, sizeof small);
  CHECK_INT(n, 10);
  CHECK_STR(small, "PID-");
  char one[1] = {'x'};
  n = cad_hl7_path_format(&p, one, 1);
  CHECK_INT(n, 10);
  CHECK_INT(one[0], 0);
}

/* ---- editing ------------------------------------------------------------------ */

TEST(set_field_and_serialize) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK_INT(SET(&m, "PID-5.1", "SMITH"), 1);
  CHECK(m.dirty);
  CHECK(m.segs[2].dirty);
  CHECK(!m.segs[0].dirty);
  CHECK(!m.segs[3].dirty);
  CHECK_RAW(&m, "PID-5", "SMITH^JOHN^Q");
  CHECK_RAW(&m, "PID-5.1", "SMITH");
  CHECK_RAW(&m, "PID-7", "19800101"); /* neighbours untouched */
  /* the input bytes are not modified */
  CHECK(strstr(ADT, "DOE^JOHN") != NULL);
  CHECK_SER(
      &m,
      "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5\r"
      "EVN|A01|20240101120000\r"
      "PID|1||12345^^^HOSP^MR~67890^^^OTHER^PI||SMITH^JOHN^Q||19800101|M\r"
      "PV1|1|I|W^389^1^UABH^^^^3\r");
  /* whole field, twice: the last value wins */
  CHECK_INT(SET(&m, "PID-7", "19700101"), 1);
  CHECK_INT(SET(&m, "PID-7", "19600101"), 1);
  CHECK_RAW(&m, "PID-7", "19600101");
  /* the re-parsed output has the new values */
  cad_arena_t a2;
  cad_arena_init(&a2, 0, 0);
  cad_hl7_msg_t m2;
  cad_buf_t b = CAD_BUF_INIT;
  CHECK_INT(reparse(&m, &b, &m2, &a2), 0);
  CHECK_INT(m2.nsegs, 4);
  CHECK_RAW(&m2, "PID-5.1", "SMITH");
  CHECK_RAW(&m2, "PID-7", "19600101");
  CHECK_RAW(&m2, "PID-8", "M");
  cad_buf_free(&b);
  cad_arena_free(&a2);
  cad_arena_free(&a);
}

TEST(set_header_fields) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK_INT(SET(&m, "MSH-3", "NEWAPP"), 1);
  CHECK_INT(SET(&m, "MSH-9.2", "A08"), 1);
  CHECK_RAW(&m, "MSH-1", "|");
  CHECK_RAW(&m, "MSH-2", "^~\\&");
  CHECK_RAW(&m, "MSH-3", "NEWAPP");
  CHECK_RAW(&m, "MSH-4", "SENDFAC");
  CHECK_RAW(&m, "MSH-9", "ADT^A08^ADT_A01");
  CHECK_SER(
      &m,
      "MSH|^~\\&|NEWAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A08^ADT_A01|MSG00001|P|2.5\r"
      "EVN|A01|20240101120000\r"
      "PID|1||12345^^^HOSP^MR~67890^^^OTHER^PI||DOE^JOHN^Q||19800101|M\r"
      "PV1|1|I|W^389^1^UABH^^^^3\r");
  /* MSH-1 and MSH-2 cannot be set */
  CHECK(SET(&m, "MSH-1", "#") < 0);
  CHECK(SET(&m, "MSH-2", "^~\\&#") < 0);
  CHECK_RAW(&m, "MSH-1", "|");
  CHECK_RAW(&m, "MSH-2", "^~\\&");
  CHECK_INT(m.segs[0].d.field, '|');
  cad_arena_free(&a);
}

TEST(set_creates_missing_structure) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK_INT(SET(&m, "PID-8.4", "X"), 1);        /* component beyond the last */
  CHECK_INT(SET(&m, "PID-3[4]", "R4"), 1);      /* repetition beyond the last */
  CHECK_INT(SET(&m, "PID-3[1].4.2", "ISO"), 1); /* subcomponent */
  CHECK_INT(SET(&m, "PID-12", "Z"), 1);         /* field beyond the last */
  CHECK_INT(SET(&m, "PV1-5[2].3.2", "S"), 1);   /* all of it at once */
  CHECK_RAW(&m, "PID-8", "M^^^X");
  CHECK_RAW(&m, "PID-3", "12345^^^HOSP&ISO^MR~67890^^^OTHER^PI~~R4");
  CHECK_RAW(&m, "PID-3[3]", "");
  CHECK_RAW(&m, "PID-3[4]", "R4");
  CHECK_RAW(&m, "PID-3.4.2", "ISO");
  CHECK_RAW(&m, "PID-12", "Z");
  CHECK_RAW(&m, "PID-10", "");
  CHECK_RAW(&m, "PV1-5[2].3.2", "S");
  CHECK_SER(
      &m,
      "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5\r"
      "EVN|A01|20240101120000\r"
      "PID|1||12345^^^HOSP&ISO^MR~67890^^^OTHER^PI~~R4||DOE^JOHN^Q||19800101|M^^^X||||Z\r"
      "PV1|1|I|W^389^1^UABH^^^^3||~^^&S\r");
  cad_arena_free(&a);
}

TEST(set_escapes_delimiters) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK_INT(SET(&m, "PID-5.1", "O|B^R~I&E\\N"), 1);
  CHECK_RAW(&m, "PID-5.1", "O\\F\\B\\S\\R\\R\\I\\T\\E\\E\\N");
  CHECK_VAL(&m, &a, "PID-5.1", "O|B^R~I&E\\N");
  CHECK_RAW(&m, "PID-5.2", "JOHN"); /* the value did not split the field */
  CHECK_INT(SET(&m, "PID-11", "L1\rL2\nL3"), 1);
  CHECK_RAW(&m, "PID-11", "L1\\X0D\\L2\\X0A\\L3");
  CHECK_VAL(&m, &a, "PID-11", "L1\rL2\nL3");
  /* a whole field given as text stays one repetition */
  CHECK_INT(SET(&m, "PID-3", "a~b^c"), 1);
  CHECK_ABSENT(&m, "PID-3[2]");
  CHECK_VAL(&m, &a, "PID-3", "a~b^c");
  cad_arena_t a2;
  cad_arena_init(&a2, 0, 0);
  cad_hl7_msg_t m2;
  cad_buf_t b = CAD_BUF_INIT;
  CHECK_INT(reparse(&m, &b, &m2, &a2), 0);
  CHECK_INT(m2.nsegs, 4);
  CHECK_VAL(&m2, &a2, "PID-5.1", "O|B^R~I&E\\N");
  CHECK_VAL(&m2, &a2, "PID-11", "L1\rL2\nL3");
  CHECK_RAW(&m2, "PID-8", "M");
  cad_buf_free(&b);
  cad_arena_free(&a2);
  cad_arena_free(&a);
}

TEST(set_escapes_with_custom_delims) {
  static const char msg[] = "MSH$%~\\&$APP\rPID$1$$A%B\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(SET(&m, "PID-3.1", "x$y%z|w"), 1);
  CHECK_RAW(&m, "PID-3", "x\\F\\y\\S\\z|w%B");
  CHECK_VAL(&m, &a, "PID-3.1", "x$y%z|w");
  CHECK_SER(&m, "MSH$%~\\&$APP\rPID$1$$x\\F\\y\\S\\z|w%B\r");
  cad_arena_free(&a);
}

TEST(set_raw) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK_INT(SET_RAW(&m, "PID-5", "X^Y~Z\\F\\"), 1);
  CHECK_RAW(&m, "PID-5", "X^Y~Z\\F\\");
  CHECK_RAW(&m, "PID-5.2", "Y");
  CHECK_RAW(&m, "PID-5[2]", "Z\\F\\");
  CHECK_VAL(&m, &a, "PID-5[2]", "Z|");
  CHECK_SER(
      &m,
      "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5\r"
      "EVN|A01|20240101120000\r"
      "PID|1||12345^^^HOSP^MR~67890^^^OTHER^PI||X^Y~Z\\F\\||19800101|M\r"
      "PV1|1|I|W^389^1^UABH^^^^3\r");
  cad_arena_free(&a);
}

TEST(set_wildcards) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ORU, &a, NULL) == 0);
  CHECK_INT(SET(&m, "OBX[*]-5", "V"), 3);
  CHECK_RAW(&m, "OBX[1]-5", "V");
  CHECK_RAW(&m, "OBX[2]-5", "V");
  CHECK_RAW(&m, "OBX[3]-5", "V");
  CHECK_SER(&m,
            "MSH|^~\\&|LAB|FAC|EHR|FAC|20240101||ORU^R01|7|P|2.5\r"
            "OBR|1\r"
            "OBX|1|ST|CODE1||V\r"
            "OBX|2|ST|CODE2||V\r"
            "OBX|3|ST|CODE3||V\r");
  cad_arena_reset(&a);
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK_INT(SET(&m, "PID-3[*].4", "H"), 2);
  CHECK_RAW(&m, "PID-3", "12345^^^H^MR~67890^^^H^PI");
  /* a path whose segment does not occur with occ > 1 changes nothing */
  uint32_t n = m.nsegs;
  CHECK(SET(&m, "ZXY[2]-1", "v") <= 0);
  CHECK_INT(m.nsegs, n);
  cad_arena_free(&a);
}

TEST(set_missing_occurrence_is_not_appended) {
  /* "a missing segment is appended ... (only when p->occ is 1 or ALL)" */
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  CHECK(SET(&m, "PID[2]-3", "x") <= 0);
  CHECK(SET(&m, "ZXY[2]-1", "v") <= 0);
  CHECK(SET(&m, "ZXY[3]-1", "v") <= 0);
  CHECK_INT(m.nsegs, 4);
  CHECK_ABSENT(&m, "PID[2]-3");
  /* nor is a header segment made up: it would carry no delimiters */
  CHECK(SET(&m, "BHS-3", "x") <= 0);
  CHECK(SET(&m, "FHS-3", "x") <= 0);
  CHECK_INT(m.nsegs, 4);
  CHECK_SER(&m, ADT);
  cad_arena_free(&a);
}

TEST(set_appended_segment_uses_last_header_delims) {
  /* a batch whose second message has other delimiters: the new segment is
   * written in the delimiters in force at the end of the message */
  static const char msg[] = "BHS|^~\\&|B\rMSH$%~\\&$M\rPID$1\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, msg, &a, NULL) == 0);
  CHECK_INT(SET(&m, "ZZZ-2.2", "a$b"), 1);
  CHECK_SER(&m, "BHS|^~\\&|B\rMSH$%~\\&$M\rPID$1\rZZZ$$%a\\F\\b\r");
  cad_arena_t a2;
  cad_arena_init(&a2, 0, 0);
  cad_hl7_msg_t m2;
  cad_buf_t b = CAD_BUF_INIT;
  CHECK_INT(reparse(&m, &b, &m2, &a2), 0);
  CHECK_VAL(&m2, &a2, "ZZZ-2.2", "a$b");
  cad_buf_free(&b);
  cad_arena_free(&a2);
  cad_arena_free(&a);
}

TEST(set_missing_segment_appends) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, "MSH|^~\\&|A\rPID|1", &a, NULL) == 0);
  CHECK(!m.final_terminator);
  CHECK_INT(SET(&m, "ZXY-2.2", "v"), 1);
  CHECK_INT(m.nsegs, 3);
  if (m.nsegs == 3) {
    CHECK_STR(m.segs[2].name, "ZXY");
    CHECK_INT(m.segs[2].id, cad_hl7_segid("ZXY"));
    CHECK_INT(m.segs[2].d.field, '|');
  }
  CHECK_RAW(&m, "ZXY-2.2", "v");
  CHECK_RAW(&m, "ZXY-1", "");
  /* a changed message: every segment followed by \r */
  CHECK_SER(&m, "MSH|^~\\&|A\rPID|1\rZXY||^v\r");
  cad_arena_free(&a);
}

TEST(clear) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  cad_hl7_path_t p = PATH("PID-5");
  CHECK(cad_hl7_clear(&m, &p) >= 0);
  cad_hl7_match_t mt;
  CHECK(cad_hl7_get(&m, &p, &mt));
  CHECK_INT(cad_hl7_kind(&mt), CAD_HL7_EMPTY);
  p = PATH("PID-3[2]");
  CHECK(cad_hl7_clear(&m, &p) >= 0);
  CHECK_RAW(&m, "PID-3", "12345^^^HOSP^MR~");
  CHECK_RAW(&m, "PID-3[2]", "");
  CHECK_SER(
      &m,
      "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5\r"
      "EVN|A01|20240101120000\r"
      "PID|1||12345^^^HOSP^MR~||||19800101|M\r"
      "PV1|1|I|W^389^1^UABH^^^^3\r");
  cad_arena_free(&a);
}

TEST(segment_delete_insert_rename) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, ADT, &a, NULL) == 0);
  /* delete EVN */
  CHECK(cad_hl7_seg_delete(&m, 1) >= 0);
  CHECK_INT(m.nsegs, 3);
  CHECK_STR(m.segs[1].name, "PID");
  CHECK(m.dirty);
  CHECK(cad_hl7_seg_delete(&m, 3) < 0);
  CHECK(cad_hl7_seg_delete(&m, 1000) < 0);
  CHECK_INT(m.nsegs, 3);
  /* insert a copy of caller text before PID */
  char nte[] = "NTE|1||hello^world";
  CHECK(cad_hl7_seg_insert(&m, 1, nte, strlen(nte)) >= 0);
  memset(nte, 'X', strlen(nte)); /* the text was copied */
  CHECK_INT(m.nsegs, 4);
  CHECK_STR(m.segs[1].name, "NTE");
  CHECK_INT(m.segs[1].id, cad_hl7_segid("NTE"));
  CHECK_RAW(&m, "NTE-3.2", "world");
  CHECK_RAW(&m, "NTE-1", "1");
  /* append, and out of range */
  CHECK(cad_hl7_seg_insert(&m, 4, "ZZ1|a", 5) >= 0);
  CHECK_INT(m.nsegs, 5);
  CHECK(cad_hl7_seg_insert(&m, 7, "ZZ2|a", 5) < 0);
  CHECK_INT(m.nsegs, 5);
  /* rename PID to ZPI */
  CHECK(cad_hl7_seg_rename(&m, 2, "ZPI") >= 0);
  CHECK_STR(m.segs[2].name, "ZPI");
  CHECK_INT(m.segs[2].id, cad_hl7_segid("ZPI"));
  CHECK_INT(cad_hl7_find_seg(&m, cad_hl7_segid("PID"), 1, 0), -1);
  CHECK_RAW(&m, "ZPI-5.2", "JOHN");
  CHECK(cad_hl7_seg_rename(&m, 9, "ZPI") < 0);
  CHECK_SER(
      &m,
      "MSH|^~\\&|SENDAPP|SENDFAC|RCVAPP|RCVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5\r"
      "NTE|1||hello^world\r"
      "ZPI|1||12345^^^HOSP^MR~67890^^^OTHER^PI||DOE^JOHN^Q||19800101|M\r"
      "PV1|1|I|W^389^1^UABH^^^^3\r"
      "ZZ1|a\r");
  /* an inserted segment can be edited like the others */
  CHECK_INT(SET(&m, "NTE-3.1", "bye"), 1);
  CHECK_RAW(&m, "NTE-3", "bye^world");
  cad_arena_free(&a);
}

/* ---- serialization ------------------------------------------------------------ */

static void check_roundtrip_at(int line, const char *in, const char *want) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  int rc = parse_s(&m, in, &a, NULL);
  if (rc != 0) fail_at(line, "parse failed: %d", rc);
  else check_ser_at(line, &m, want, strlen(want));
  cad_arena_free(&a);
}
#define CHECK_ROUNDTRIP(in, want) check_roundtrip_at(__LINE__, (in), (want))

TEST(serialize_unchanged) {
  CHECK_ROUNDTRIP(ADT, ADT);
  CHECK_ROUNDTRIP(ORU, ORU);
  CHECK_ROUNDTRIP("MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I", "MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I");
  CHECK_ROUNDTRIP("MSH|^~\\&|A|B\nPID|1||X^Y\nPV1|1|I\n", "MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I\r");
  CHECK_ROUNDTRIP("MSH|^~\\&|A|B\r\nPID|1||X^Y\r\nPV1|1|I", "MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I");
  CHECK_ROUNDTRIP("MSH|^~\\&|A|B\r\nPID|1||X^Y\nPV1|1|I\r", "MSH|^~\\&|A|B\rPID|1||X^Y\rPV1|1|I\r");
  CHECK_ROUNDTRIP("MSH$%~\\&$A\rPID$1\r", "MSH$%~\\&$A\rPID$1\r");
  CHECK_ROUNDTRIP("MSH|^~\\&", "MSH|^~\\&");
  CHECK_ROUNDTRIP("MSH|^~\\&|||||\rPID|||\r", "MSH|^~\\&|||||\rPID|||\r");
}

TEST(serialize_unchanged_keeps_empty_lines) {
  /* "byte for byte, except that every terminator is normalised to \r" */
  CHECK_ROUNDTRIP("MSH|^~\\&|A\r\rPID|1\r", "MSH|^~\\&|A\r\rPID|1\r");
  CHECK_ROUNDTRIP("MSH|^~\\&|A\n\nPID|1\n", "MSH|^~\\&|A\r\rPID|1\r");
  CHECK_ROUNDTRIP("MSH|^~\\&|A\r\n\r\nPID|1", "MSH|^~\\&|A\r\rPID|1");
}

TEST(serialize_changed_normalises) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  REQUIRE(parse_s(&m, "MSH|^~\\&|A|B\r\nPID|1||X^Y\nPV1|1|I", &a, NULL) == 0);
  CHECK_INT(SET(&m, "PID-3.2", "Q"), 1);
  CHECK_SER(&m, "MSH|^~\\&|A|B\rPID|1||X^Q\rPV1|1|I\r");
  cad_arena_free(&a);
}

/* ---- limits and errors -------------------------------------------------------- */

static void check_diag(const cad_hl7_diag_t *d, int rc) {
  CHECK_INT(d->code, rc);
  CHECK(d->hl7_code != 0);
  CHECK(memchr(d->reason, 0, sizeof d->reason) != NULL);
  CHECK(d->reason[0] != 0);
  CHECK(cad_hl7_err_text(d->hl7_code) != NULL && *cad_hl7_err_text(d->hl7_code));
}

TEST(error_empty) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t d;
  memset(&d, 0, sizeof d);
  int rc = cad_hl7_parse(&m, "", 0, &a, NULL, &d);
  CHECK_INT(rc, CAD_E_EMPTY);
  check_diag(&d, rc);
  CHECK_INT(cad_hl7_parse(&m, "MSH|^~\\&", 0, &a, NULL, NULL), CAD_E_EMPTY);
  /* nothing but terminators: no segment at all */
  rc = cad_hl7_parse(&m, "\r\n\r\n", 4, &a, NULL, &d);
  CHECK_INT(rc, CAD_E_EMPTY);
  cad_arena_free(&a);
}

TEST(error_bare_header_segment_later) {
  /* A fuzzer finding: a trailing "MSH" without a field separator parsed,
   * and broke the message once a segment was appended after it. */
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t d;
  memset(&d, 0, sizeof d);
  CHECK_INT(parse_s(&m, "MSH|^~\\&|A|B\rPID|1\rMSH", &a, &d), CAD_E_DELIM);
  CHECK_INT(d.segment, 3);
  CHECK_INT(parse_s(&m, "MSH|^~\\&|A|B\rPID|1\rMSH\n", &a, &d), CAD_E_DELIM);
  CHECK_INT(parse_s(&m, "MSH|^~\\&|A|B\rPID|1\rMSH\rPV1|1", &a, &d), CAD_E_DELIM);
  cad_arena_free(&a);
}

TEST(error_no_msh) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t d;
  memset(&d, 0, sizeof d);
  int rc = parse_s(&m, "PID|1||123\rPV1|1\r", &a, &d);
  CHECK_INT(rc, CAD_E_NOMSH);
  check_diag(&d, rc);
  CHECK_INT(d.segment, 1);
  CHECK_STR(d.seg_id, "PID");
  CHECK_INT(d.offset, 0);
  CHECK_INT(d.hl7_code, 100);
  CHECK_INT(parse_s(&m, "EVN|A01\r", &a, NULL), CAD_E_NOMSH);
  CHECK_INT(parse_s(&m, "MSA|AA|1|", &a, NULL), CAD_E_NOMSH);
  cad_arena_free(&a);
}

TEST(error_delimiters) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  static const char *bad[] = {"MSH",          "MSH|", "MSH||A|B\r", "MSH\rPID|1\r",
                              "MSH\nPID|1\n", "BHS",  "FHS|"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cad_hl7_diag_t d;
    memset(&d, 0, sizeof d);
    int rc = parse_s(&m, bad[i], &a, &d);
    if (rc != CAD_E_DELIM) {
      fprintf(stderr, "  \"");
      put_esc(stderr, bad[i], strlen(bad[i]));
      fprintf(stderr, "\": rc %d (%s), expected CAD_E_DELIM\n", rc, cad_err_name(rc));
      cad_test_failures++;
      continue;
    }
    check_diag(&d, rc);
    CHECK_INT(d.segment, 1);
  }
  cad_arena_free(&a);
}

TEST(error_diag_in_later_segment) {
  /* a second header segment with broken delimiters is reported where it is */
  static const char msg[] = "MSH|^~\\&|A\rPID|1\rMSH\rPID|2\r";
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t d;
  memset(&d, 0, sizeof d);
  int rc = parse_s(&m, msg, &a, &d);
  CHECK_INT(rc, CAD_E_DELIM);
  if (rc == CAD_E_DELIM) {
    check_diag(&d, rc);
    CHECK_INT(d.segment, 3);
    CHECK_STR(d.seg_id, "MSH");
    CHECK_INT(d.offset, (size_t)(strstr(msg, "MSH\r") - msg));
  }
  /* a bad segment id is rejected and reported with its position */
  static const char bad_id[] = "MSH|^~\\&|A\rP!D|1\r";
  memset(&d, 0, sizeof d);
  rc = parse_s(&m, bad_id, &a, &d);
  CHECK_INT(rc, CAD_E_SEGMENT);
  if (rc == CAD_E_SEGMENT) {
    check_diag(&d, rc);
    CHECK_INT(d.segment, 2);
    CHECK_INT(d.offset, 11);
  }
  cad_arena_free(&a);
}

TEST(limits) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t d;
  cad_hl7_limits_t lim;

  memset(&lim, 0, sizeof lim);
  lim.max_bytes = 20;
  memset(&d, 0, sizeof d);
  int rc = cad_hl7_parse(&m, ADT, strlen(ADT), &a, &lim, &d);
  CHECK_INT(rc, CAD_E_TOOBIG);
  if (rc == CAD_E_TOOBIG) check_diag(&d, rc);
  lim.max_bytes = strlen(ADT);
  CHECK_INT(cad_hl7_parse(&m, ADT, strlen(ADT), &a, &lim, NULL), 0);

  memset(&lim, 0, sizeof lim);
  lim.max_segments = 3;
  memset(&d, 0, sizeof d);
  rc = cad_hl7_parse(&m, ADT, strlen(ADT), &a, &lim, &d);
  CHECK_INT(rc, CAD_E_TOOBIG);
  if (rc == CAD_E_TOOBIG) {
    check_diag(&d, rc);
    CHECK_INT(d.segment, 4);
    CHECK_STR(d.seg_id, "PV1");
  }
  lim.max_segments = 4;
  CHECK_INT(cad_hl7_parse(&m, ADT, strlen(ADT), &a, &lim, NULL), 0);

  memset(&lim, 0, sizeof lim);
  lim.max_fields = 6; /* PID has 8 fields, the others fewer than 6 except MSH */
  memset(&d, 0, sizeof d);
  static const char few[] = "MSH|^~\\&|A|B\rEVN|A01\rPID|1|2|3|4|5|6|7|8|9|10\rPV1|1\r";
  rc = cad_hl7_parse(&m, few, strlen(few), &a, &lim, &d);
  CHECK_INT(rc, CAD_E_TOOBIG);
  if (rc == CAD_E_TOOBIG) {
    check_diag(&d, rc);
    CHECK_INT(d.segment, 3);
    CHECK_STR(d.seg_id, "PID");
  }
  lim.max_fields = 20;
  CHECK_INT(cad_hl7_parse(&m, few, strlen(few), &a, &lim, NULL), 0);
  cad_arena_free(&a);
}

TEST(limits_defaults) {
  cad_arena_t a;
  cad_arena_init(&a, 0, 0);
  cad_hl7_msg_t m;
  cad_hl7_diag_t d;
  /* 1500 fields in one segment is over the default of 1000 */
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(cad_buf_puts(&b, "MSH|^~\\&|A\rZZZ") == 0);
  for (int i = 0; i < 1500; i++) REQUIRE(cad_buf_puts(&b, "|x") == 0);
  REQUIRE(cad_buf_puts(&b, "\r") == 0);
  memset(&d, 0, sizeof d);
  int rc = cad_hl7_parse(&m, b.data, b.len, &a, NULL, &d);
  CHECK_INT(rc, CAD_E_TOOBIG);
  if (rc == CAD_E_TOOBIG) CHECK_INT(d.segment, 2);
  cad_buf_clear(&b);
  cad_arena_reset(&a);
  /* 900 is fine */
  REQUIRE(cad_buf_puts(&b, "MSH|^~\\&|A\rZZZ") == 0);
  for (int i = 0; i < 900; i++) REQUIRE(cad_buf_puts(&b, "|x") == 0);
  CHECK_INT(cad_hl7_parse(&m, b.data, b.len, &a, NULL, NULL), 0);
  cad_buf_clear(&b);
  cad_arena_reset(&a);
  /* 100000 segments are fine, 100001 are not */
  REQUIRE(cad_buf_puts(&b, "MSH|^~\\&|A") == 0);
  for (int i = 1; i < 100000; i++) REQUIRE(cad_buf_puts(&b, "\rZZZ") == 0);
  rc = cad_hl7_parse(&m, b.data, b.len, &a, NULL, NULL);
  CHECK_INT(rc, 0);
  if (rc == 0) CHECK_INT(m.nsegs, 100000);
  cad_arena_reset(&a);
  REQUIRE(cad_buf_puts(&b, "\rZZZ") == 0);
  memset(&d, 0, sizeof d);
  rc = cad_hl7_parse(&m, b.data, b.len, &a, NULL, &d);
  CHECK_INT(rc, CAD_E_TOOBIG);
  if (rc == CAD_E_TOOBIG) CHECK_INT(d.segment, 100001);
  cad_buf_free(&b);
  cad_arena_reset(&a);
  /* more than 16 MiB */
  size_t big = (size_t)16 * 1024 * 1024 + 1;
  char *p = malloc(big);
  REQUIRE(p != NULL);
  memset(p, 'x', big);
  memcpy(p, "MSH|^~\\&|", 9);
  memset(&d, 0, sizeof d);
  rc = cad_hl7_parse(&m, p, big, &a, NULL, &d);
  CHECK_INT(rc, CAD_E_TOOBIG);
  free(p);
  cad_arena_free(&a);
}

TEST(arena_budget_is_respected) {
  /* an arena too small for the tree: a clean error, never a crash */
  cad_arena_t a;
  cad_arena_init(&a, 256, 256);
  cad_hl7_msg_t m;
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(cad_buf_puts(&b, "MSH|^~\\&|A") == 0);
  for (int i = 0; i < 200; i++) REQUIRE(cad_buf_puts(&b, "\rOBX|1|ST|C||v") == 0);
  int rc = cad_hl7_parse(&m, b.data, b.len, &a, NULL, NULL);
  CHECK_INT(rc, CAD_E_NOMEM);
  cad_buf_free(&b);
  cad_arena_free(&a);
}

TEST(arena_rewind_gives_memory_back) {
  cad_arena_t a;
  cad_arena_init(&a, 256, 4096);
  char *keep = cad_arena_dup(&a, "kept", 4);
  REQUIRE(keep);
  cad_arena_mark_t m = cad_arena_mark(&a);
  size_t used = a.used;
  /* fill the budget, across several new chunks */
  int n = 0;
  while (cad_arena_alloc(&a, 200)) n++;
  CHECK(n > 5);
  CHECK(a.used > used);
  cad_arena_rewind(&a, m);
  CHECK(a.used == used);
  CHECK_STR(keep, "kept");
  /* all of it can be taken again */
  int again = 0;
  while (cad_arena_alloc(&a, 200)) again++;
  CHECK_INT(again, n);
  /* a mark of an empty arena gives everything back */
  cad_arena_free(&a);
  cad_arena_init(&a, 256, 0);
  m = cad_arena_mark(&a);
  REQUIRE(cad_arena_alloc(&a, 1000));
  cad_arena_rewind(&a, m);
  CHECK(a.head == NULL && a.used == 0);
  cad_arena_free(&a);
}

/* ---- over-reads: input placed right before an unreadable page ---------------- */

static void walk_message(const cad_hl7_msg_t *m, cad_arena_t *a) {
  for (uint32_t i = 0; i < m->nsegs; i++) {
    const cad_hl7_seg_t *s = &m->segs[i];
    int nf = cad_hl7_nfields(s);
    for (int f = 1; f <= nf; f++) {
      cad_str_t fv, rv, cv, sv, dec;
      if (!cad_hl7_field(s, f, &fv)) {
        fprintf(stderr, "  segment %u field %d of %d missing\n", i, f, nf);
        cad_test_failures++;
        continue;
      }
      if (s->header && f <= 2) continue;
      int nr = s->d.rep ? cad_hl7_npieces(fv, s->d.rep) : 1;
      for (int r = 1; r <= nr; r++) {
        if (s->d.rep) {
          if (!cad_hl7_piece(fv, s->d.rep, r, &rv)) cad_test_failures++;
        } else {
          rv = fv;
        }
        int nc = cad_hl7_npieces(rv, s->d.comp);
        for (int c = 1; c <= nc; c++) {
          if (!cad_hl7_piece(rv, s->d.comp, c, &cv)) cad_test_failures++;
          int ns = s->d.sub ? cad_hl7_npieces(cv, s->d.sub) : 1;
          for (int k = 1; k <= ns; k++) {
            if (s->d.sub) {
              if (!cad_hl7_piece(cv, s->d.sub, k, &sv)) cad_test_failures++;
            } else {
              sv = cv;
            }
            if (!cad_hl7_decode(&s->d, sv, a, &dec)) cad_test_failures++;
          }
        }
      }
    }
  }
}

TEST(no_read_past_the_end) {
  static const char *inputs[] = {
      "MSH|^~\\&",
      "MSH|^~\\&|",
      "MSH|^~\\&|A\\",
      "MSH|^~\\&|A\\X0",
      "MSH|^~\\&|A\\X0D",
      "MSH|^~\\&|A\\F",
      "MSH|^~\\&|A^",
      "MSH|^~\\&|A~",
      "MSH|^~\\&|A&",
      "MSH|^~\\&\rPID",
      "MSH|^~\\&\rPID|",
      "MSH|^~\\&\r",
      "MSH|^~\\&\r\n",
      "MSH|^~\\&\rPID|1\r\n\r",
      "MSH|^~\\&#",
      "MSH|^~",
      "MSH|^",
      "MSH|",
      "MSH",
      "MS",
      "M",
      "MSH|^~\\&|\"\"",
      "PID|1",
      "MSH|^~\\&|A\r\r\r",
  };
  long pg = sysconf(_SC_PAGESIZE);
  REQUIRE(pg > 0);
  char *map =
      mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(map != MAP_FAILED);
  REQUIRE(mprotect(map + pg, (size_t)pg, PROT_NONE) == 0);
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
    size_t n = strlen(inputs[i]);
    char *p = map + pg - n;
    memcpy(p, inputs[i], n);
    cad_arena_t a;
    cad_arena_init(&a, 0, 0);
    cad_hl7_msg_t m;
    int rc = cad_hl7_parse(&m, p, n, &a, NULL, NULL);
    if (rc == 0) {
      walk_message(&m, &a);
      cad_buf_t b = CAD_BUF_INIT;
      CHECK(cad_hl7_serialize(&m, &b) >= 0);
      cad_buf_free(&b);
      cad_hl7_path_t path = PATH("MSH-3.1.1");
      cad_hl7_match_t mt;
      (void)cad_hl7_get(&m, &path, &mt);
    } else {
      CHECK(rc < 0);
    }
    /* path parsing and unescaping at the page end too */
    cad_hl7_path_t q;
    (void)cad_hl7_path_parse(p, n, &q, NULL, NULL);
    char out[64];
    (void)cad_hl7_unescape(&cad_hl7_default_delims, (cad_str_t){p, n}, out);
    cad_arena_free(&a);
  }
  static const char *paths[] = {"PID-3[", "PID-3[2", "PID-3.",  "PID-",        "PID",
                                "PI",     "OBX[*",   "PID-3[*", "PID-3[2].1.", "PID-12"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    size_t n = strlen(paths[i]);
    char *p = map + pg - n;
    memcpy(p, paths[i], n);
    cad_hl7_path_t q;
    size_t pos = 0;
    (void)cad_hl7_path_parse(p, n, &q, &pos, NULL);
    CHECK(pos <= n);
  }
  munmap(map, (size_t)pg * 2);
}

TEST(err_text) {
  static const int codes[] = {100, 101, 102, 103, 200, 203, 207};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *t = cad_hl7_err_text(codes[i]);
    CHECK(t != NULL && *t);
  }
  CHECK(strcmp(cad_hl7_err_text(100), cad_hl7_err_text(207)) != 0);
  CHECK(cad_hl7_err_text(0) != NULL);
  CHECK(cad_hl7_err_text(-5) != NULL);
}

TEST_MAIN()
