/* test_charset.c - MSH-18 names, conversions both ways for every set, the
 * unrepresentable-character policies, invalid bytes, MSH-18 rewriting and
 * the ACK's echo of MSH-18. */
#include "hl7_charset.h"

#include <string.h>

#include "ack.h"
#include "cad_error.h"
#include "harness.h"

#define S(lit) ((cad_str_t){(lit), sizeof(lit) - 1})

static bool eq(cad_str_t a, const char *b, size_t blen) {
  return a.len == blen && memcmp(a.p, b, blen) == 0;
}
#define EQ(a, lit) eq((a), (lit), sizeof(lit) - 1)

TEST(names_and_mislabels) {
  static const struct {
    const char *name;
    const char *canon;
  } cases[] = {
      {"8859/1", "8859/1"},           {"ISO-8859-1", "8859/1"},
      {"iso_8859-1", "8859/1"},       {"ISO 8859/1", "8859/1"},
      {"8859-1", "8859/1"},           {"ISO IR100", "8859/1"},
      {"ISO_IR 100", "8859/1"},       {"latin1", "8859/1"},
      {"8859/15", "8859/15"},         {"ISO-8859-15", "8859/15"},
      {"LATIN9", "8859/15"},          {"8859/2", "8859/2"},
      {"ISO IR101", "8859/2"},        {"8859/9", "8859/9"},
      {"LATIN5", "8859/9"},           {"UNICODE UTF-8", "UNICODE UTF-8"},
      {"UTF-8", "UNICODE UTF-8"},     {"UTF8", "UNICODE UTF-8"},
      {"utf-8", "UNICODE UTF-8"},     {"UNICODE", "UNICODE UTF-8"},
      {"ISO IR192", "UNICODE UTF-8"}, {"ASCII", "ASCII"},
      {"US-ASCII", "ASCII"},          {"ISO IR6", "ASCII"},
      {"8859/5", "8859/5"},           {"8859/7", "8859/7"},
      {"8859/8", "8859/8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int id = cad_charset_find(cases[i].name, strlen(cases[i].name));
    CHECK(id > 0);
    const char *c = cad_charset_hl7_name(id);
    CHECK(c && strcmp(c, cases[i].canon) == 0);
    if (!c || strcmp(c, cases[i].canon) != 0) fprintf(stderr, "  %s\n", cases[i].name);
  }
  /* 8859/1 and 8859/15 and 8859/11 stay distinct after normalising. */
  CHECK(cad_charset_find("8859/1", 6) != cad_charset_find("8859/15", 7));
  CHECK(cad_charset_find("8859/1", 6) != cad_charset_find("8859/11", 7));
  /* Unknown sets, and sets that are not supported. */
  CHECK(cad_charset_find("ISO IR87", 8) == CAD_CS_NONE);
  CHECK(cad_charset_find("UNICODE UTF-16", 14) == CAD_CS_NONE);
  CHECK(cad_charset_find("", 0) == CAD_CS_NONE);
  CHECK(cad_charset_find("8859/12", 7) == CAD_CS_NONE);
  /* Windows-1252 is read, never written. */
  int w = cad_charset_find("windows-1252", 12);
  CHECK(w > 0 && !cad_charset_writable(w) && cad_charset_hl7_name(w) == NULL);
  CHECK(strcmp(cad_charset_name(w), "WINDOWS-1252") == 0);
  CHECK(cad_charset_writable(CAD_CS_UTF8) && !cad_charset_writable(CAD_CS_NONE));
  for (int id = 1; id <= cad_charset_count(); id++) CHECK(cad_charset_available(id) == 0);
}

/* Every byte each set defines: decoded to UTF-8 and encoded back, the same
 * bytes; the bytes it does not define are refused with their offset. */
TEST(round_trip_every_set) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1 << 22);
  for (int id = 1; id <= cad_charset_count(); id++) {
    char all[256];
    size_t n = 0, undefined = 0;
    for (int b = 1; b < 256; b++) {
      char c = (char)b;
      cad_str_t u;
      size_t bad = 99;
      int rc = cad_charset_decode(id, (cad_str_t){&c, 1}, &a, &u, &bad);
      if (rc == 0) all[n++] = c;
      else {
        CHECK(rc == CAD_E_INVAL && bad == 0);
        undefined++;
      }
    }
    /* ASCII: 127 bytes; UTF-8: the ASCII half alone; single-byte sets:
     * the ASCII half and most of the upper half. */
    if (id == CAD_CS_ASCII || id == CAD_CS_UTF8) CHECK(n == 127);
    else CHECK(n >= 127 + 80);
    cad_str_t u, back;
    REQUIRE(cad_charset_decode(id, (cad_str_t){all, n}, &a, &u, NULL) == 0);
    CHECK(cad_hl7_is_utf8(u.p, u.len));
    size_t changed = 9;
    REQUIRE(cad_charset_encode(id, u, CAD_CS_REJECT, '\\', &a, &back, NULL, &changed) == 0);
    CHECK(back.len == n && memcmp(back.p, all, n) == 0);
    CHECK(changed == 0);
    if (back.len != n || memcmp(back.p, all, n) != 0)
      fprintf(stderr, "  %s: round trip differs\n", cad_charset_name(id));
  }
  cad_arena_free(&a);
}

TEST(known_characters) {
  static const struct {
    const char *set;
    unsigned char byte;
    const char *utf8;
  } cases[] = {
      {"8859/1", 0xE9, "\xC3\xA9"},           /* é */
      {"8859/1", 0xDC, "\xC3\x9C"},           /* Ü */
      {"8859/15", 0xA4, "\xE2\x82\xAC"},      /* € */
      {"8859/2", 0xB1, "\xC4\x85"},           /* ą */
      {"8859/5", 0xC0, "\xD0\xA0"},           /* Р */
      {"8859/7", 0xE1, "\xCE\xB1"},           /* α */
      {"8859/9", 0xFD, "\xC4\xB1"},           /* ı */
      {"WINDOWS-1252", 0x80, "\xE2\x82\xAC"}, /* € */
  };
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1 << 20);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int id = cad_charset_find(cases[i].set, strlen(cases[i].set));
    REQUIRE(id > 0);
    char in[3] = {'A', (char)cases[i].byte, 'z'};
    cad_str_t u, back;
    REQUIRE(cad_charset_decode(id, (cad_str_t){in, 3}, &a, &u, NULL) == 0);
    size_t ul = strlen(cases[i].utf8);
    CHECK(u.len == ul + 2 && memcmp(u.p + 1, cases[i].utf8, ul) == 0);
    REQUIRE(cad_charset_encode(id, u, CAD_CS_REJECT, '\\', &a, &back, NULL, NULL) == 0);
    CHECK(back.len == 3 && memcmp(back.p, in, 3) == 0);
  }
  cad_arena_free(&a);
}

/* € and 日 cannot be written in ISO-8859-1: each policy. */
TEST(unrepresentable_policies) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1 << 20);
  int l1 = cad_charset_find("8859/1", 6);
  cad_str_t in = S("Caf\xC3\xA9 \xE2\x82\xAC 5 \xE6\x97\xA5");
  cad_str_t out;
  size_t bad = 0, changed = 0;
  CHECK(cad_charset_encode(l1, in, CAD_CS_REJECT, '\\', &a, &out, &bad, &changed) == CAD_E_INVAL);
  CHECK(bad == 6); /* the euro sign */
  REQUIRE(cad_charset_encode(l1, in, CAD_CS_REPLACE, '\\', &a, &out, &bad, &changed) == 0);
  CHECK(EQ(out, "Caf\xE9 ? 5 ?"));
  CHECK(changed == 2);
  REQUIRE(cad_charset_encode(l1, in, CAD_CS_ESCAPE, '\\', &a, &out, &bad, &changed) == 0);
  CHECK(EQ(out, "Caf\xE9 \\XE282AC\\ 5 \\XE697A5\\"));
  CHECK(changed == 2);
  /* The message's own escape character. */
  REQUIRE(cad_charset_encode(l1, in, CAD_CS_ESCAPE, '!', &a, &out, &bad, &changed) == 0);
  CHECK(EQ(out, "Caf\xE9 !XE282AC! 5 !XE697A5!"));
  /* No escape character declared: escape cannot, so it refuses. */
  CHECK(cad_charset_encode(l1, in, CAD_CS_ESCAPE, 0, &a, &out, &bad, &changed) == CAD_E_INVAL);
  /* Many escapes: the output grows past the first guess. */
  char big[3000];
  size_t n = 0;
  for (int i = 0; i < 1000; i++) memcpy(big + n, "\xE2\x82\xAC", 3), n += 3;
  REQUIRE(cad_charset_encode(l1, (cad_str_t){big, n}, CAD_CS_ESCAPE, '\\', &a, &out, &bad,
                             &changed) == 0);
  CHECK(out.len == 9000 && changed == 1000);
  /* Two-byte characters only, escaped: the worst growth (3.5 times). */
  char twos[2000];
  for (int i = 0; i < 1000; i++) memcpy(twos + 2 * i, "\xC3\xA9", 2);
  REQUIRE(cad_charset_encode(CAD_CS_ASCII, (cad_str_t){twos, 2000}, CAD_CS_ESCAPE, '\\', &a, &out,
                             &bad, &changed) == 0);
  CHECK(out.len == 7000 && changed == 1000 && memcmp(out.p, "\\XC3A9\\\\XC3A9\\", 14) == 0);
  /* A four-byte character to ASCII. */
  REQUIRE(cad_charset_encode(CAD_CS_ASCII, S("a\xF0\x9F\x98\x80"), CAD_CS_ESCAPE, '\\', &a, &out,
                             &bad, &changed) == 0);
  CHECK(EQ(out, "a\\XF09F9880\\"));
  /* Input that is not UTF-8 is refused, not guessed. */
  CHECK(cad_charset_encode(l1, S("ab\xE9"), CAD_CS_REPLACE, '\\', &a, &out, &bad, &changed) ==
        CAD_E_INVAL);
  CHECK(bad == 2);
  cad_arena_free(&a);
}

TEST(invalid_bytes_in_a_declared_set) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1 << 20);
  cad_str_t out;
  size_t bad = 0;
  CHECK(cad_charset_decode(CAD_CS_ASCII, S("abc\xE9"), &a, &out, &bad) == CAD_E_INVAL);
  CHECK(bad == 3);
  CHECK(cad_charset_decode(CAD_CS_UTF8, S("ab\xC3"), &a, &out, &bad) == CAD_E_INVAL);
  CHECK(bad == 2);
  CHECK(cad_charset_decode(CAD_CS_UTF8, S("a\xED\xA0\x80"), &a, &out, &bad) == CAD_E_INVAL);
  CHECK(cad_charset_decode(CAD_CS_UTF8, S("a\xC0\xAF"), &a, &out, &bad) == CAD_E_INVAL);
  /* ISO-8859-3 leaves 0xA5 undefined. */
  int l3 = cad_charset_find("8859/3", 6);
  CHECK(cad_charset_decode(l3, S("xy\xA5z"), &a, &out, &bad) == CAD_E_INVAL);
  CHECK(bad == 2);
  CHECK(cad_charset_decode(CAD_CS_NONE, S("x"), &a, &out, &bad) == CAD_E_NOTFOUND);
  CHECK(cad_charset_decode(99, S("x"), &a, &out, &bad) == CAD_E_NOTFOUND);
  /* Valid UTF-8 and ASCII are not copied. */
  cad_str_t in = S("Jos\xC3\xA9");
  REQUIRE(cad_charset_decode(CAD_CS_UTF8, in, &a, &out, &bad) == 0);
  CHECK(out.p == in.p && out.len == in.len);
  cad_arena_free(&a);
}

/* An Oracle Health (Cerner Millennium) shaped ADT: v2.3, MSH-18 8859/1,
 * Latin-1 names; to UTF-8 for the routes and back, byte for byte. */
static const char CERNER[] =
    "MSH|^~\\&|HNAM_PM|HNA500|RECEIVER|SITE|20240305083000||ADT^A08|Q150084616T145947960|P|2.3"
    "||||||8859/1\r"
    "EVN|A08|20240305083000\r"
    "PID|1||1234567^^^MRN^MRN~7654321^^^CMRN^CMRN||M\xDCLLER^JOS\xC9^^^^^Current||19580211|M|||"
    "Stra\xDF"
    "e 5^^K\xD6LN^^50667^DE||||||||FIN12345^^^FIN NBR^FIN NBR\r"
    "NTE|1||Patient pr\xE9"
    "f\xE8re le fran\xE7"
    "ais  \r";

TEST(cerner_latin1_round_trip) {
  cad_arena_t a;
  cad_arena_init(&a, 8192, 1 << 22);
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, CERNER, sizeof CERNER - 1, &a, NULL, NULL) == 0);
  cad_str_t label, utf8;
  int l1 = cad_charset_find("8859/1", 6);
  CHECK(cad_charset_declared(&m, &label) == l1);
  CHECK(EQ(label, "8859/1"));
  int src = -1;
  cad_hl7_diag_t dg = {0};
  REQUIRE(cad_charset_msg_in(&m, CAD_CS_NONE, &a, &utf8, &src, &dg) == 0);
  CHECK(src == l1);
  CHECK(cad_hl7_is_utf8(utf8.p, utf8.len));
  /* The routes see UTF-8 values. */
  cad_hl7_msg_t u;
  REQUIRE(cad_hl7_parse(&u, utf8.p, utf8.len, &a, NULL, NULL) == 0);
  cad_hl7_path_t p;
  cad_hl7_match_t mt;
  cad_str_t v;
  REQUIRE(cad_hl7_path_parse("PID-5.1", 7, &p, NULL, NULL) == 0);
  REQUIRE(cad_hl7_get(&u, &p, &mt));
  REQUIRE(cad_hl7_value(&p, &mt, &a, &v));
  CHECK(EQ(v, "M\xC3\x9CLLER"));
  /* Back to its own set (no `encoding:`): the same bytes. */
  cad_str_t back;
  REQUIRE(cad_charset_msg_out(utf8, src, CAD_CS_NONE, CAD_CS_REJECT, &a, &back, &dg) == 0);
  CHECK(back.len == sizeof CERNER - 1 && memcmp(back.p, CERNER, back.len) == 0);
  /* And asked for explicitly: the same bytes (MSH-18 already says 8859/1). */
  REQUIRE(cad_charset_msg_out(utf8, src, l1, CAD_CS_REJECT, &a, &back, &dg) == 0);
  CHECK(back.len == sizeof CERNER - 1 && memcmp(back.p, CERNER, back.len) == 0);
  /* To a UTF-8 destination: converted, MSH-18 rewritten. */
  REQUIRE(cad_charset_msg_out(utf8, src, CAD_CS_UTF8, CAD_CS_REJECT, &a, &back, &dg) == 0);
  cad_hl7_msg_t o;
  REQUIRE(cad_hl7_parse(&o, back.p, back.len, &a, NULL, NULL) == 0);
  CHECK(cad_charset_declared(&o, &label) == CAD_CS_UTF8);
  CHECK(EQ(label, "UNICODE UTF-8"));
  CHECK(memmem(back.p, back.len, "M\xC3\x9CLLER^JOS\xC3\x89", 13) != NULL);
  cad_arena_free(&a);
}

TEST(utf8_without_encoding_is_byte_identical) {
  static const char MSG[] =
      "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1||||||UNICODE UTF-8\rPID|1||1||\xE6\x97\xA5"
      "\xE6\x9C\xAC^\xE5\xA4\xAA\xE9\x83\x8E\r";
  cad_arena_t a;
  cad_arena_init(&a, 8192, 1 << 20);
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, MSG, sizeof MSG - 1, &a, NULL, NULL) == 0);
  cad_str_t utf8, out;
  int src;
  cad_hl7_diag_t dg;
  REQUIRE(cad_charset_msg_in(&m, CAD_CS_NONE, &a, &utf8, &src, &dg) == 0);
  CHECK(utf8.p == MSG && src == CAD_CS_UTF8);
  REQUIRE(cad_charset_msg_out(utf8, src, CAD_CS_NONE, CAD_CS_REJECT, &a, &out, &dg) == 0);
  CHECK(out.p == MSG && out.len == sizeof MSG - 1);
  /* Japanese to 8859/1: each policy. */
  int l1 = cad_charset_find("8859/1", 6);
  CHECK(cad_charset_msg_out(utf8, src, l1, CAD_CS_REJECT, &a, &out, &dg) == CAD_E_INVAL);
  CHECK(dg.hl7_code == 102 && dg.segment == 2 && strcmp(dg.seg_id, "PID") == 0 && dg.field == 5);
  CHECK(strstr(dg.reason, "8859/1") != NULL);
  REQUIRE(cad_charset_msg_out(utf8, src, l1, CAD_CS_REPLACE, &a, &out, &dg) == 0);
  CHECK(EQ(out, "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1||||||8859/1\rPID|1||1||??^??\r"));
  REQUIRE(cad_charset_msg_out(utf8, src, l1, CAD_CS_ESCAPE, &a, &out, &dg) == 0);
  CHECK(EQ(out,
           "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1||||||8859/1\rPID|1||1||"
           "\\XE697A5\\\\XE69CAC\\^\\XE5A4AA\\\\XE9838E\\\r"));
  /* The escapes read back as the original characters. */
  cad_hl7_msg_t e;
  REQUIRE(cad_hl7_parse(&e, out.p, out.len, &a, NULL, NULL) == 0);
  cad_hl7_path_t p;
  cad_hl7_match_t mt;
  cad_str_t v;
  REQUIRE(cad_hl7_path_parse("PID-5.2", 7, &p, NULL, NULL) == 0);
  REQUIRE(cad_hl7_get(&e, &p, &mt) && cad_hl7_value(&p, &mt, &a, &v));
  CHECK(EQ(v, "\xE5\xA4\xAA\xE9\x83\x8E"));
  cad_arena_free(&a);
}

TEST(declared_and_channel_default) {
  cad_arena_t a;
  cad_arena_init(&a, 8192, 1 << 20);
  static const struct {
    const char *msg;
    int want; /* -1: not found */
  } cases[] = {
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||8859/1\r", 3},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||ISO-8859-1 \r", 3},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||UNICODE UTF-8~8859/1\r", CAD_CS_UTF8},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||\"\"\r", CAD_CS_NONE},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||\r", CAD_CS_NONE},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3\r", CAD_CS_NONE},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||ISO IR87\r", -1},
      {"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||UNICODE UTF-16\r", -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cad_hl7_msg_t m;
    REQUIRE(cad_hl7_parse(&m, cases[i].msg, strlen(cases[i].msg), &a, NULL, NULL) == 0);
    int id = cad_charset_declared(&m, NULL);
    CHECK(id == (cases[i].want < 0 ? CAD_E_NOTFOUND : cases[i].want));
  }
  /* Unknown: 103 at MSH-18. */
  const char *unk = cases[6].msg;
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, unk, strlen(unk), &a, NULL, NULL) == 0);
  cad_str_t u;
  int src;
  cad_hl7_diag_t dg;
  CHECK(cad_charset_msg_in(&m, CAD_CS_NONE, &a, &u, &src, &dg) == CAD_E_NOTFOUND);
  CHECK(dg.hl7_code == 103 && dg.field == 18 && dg.segment == 1);
  /* No MSH-18: the channel's default decides. */
  static const char NO18[] =
      "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3\rPID|1||1||GR\xDC"
      "N\r";
  REQUIRE(cad_hl7_parse(&m, NO18, sizeof NO18 - 1, &a, NULL, NULL) == 0);
  REQUIRE(cad_charset_msg_in(&m, CAD_CS_NONE, &a, &u, &src, &dg) == 0);
  CHECK(src == CAD_CS_NONE && u.p == NO18); /* nothing said, nothing done */
  REQUIRE(cad_charset_msg_in(&m, 3, &a, &u, &src, &dg) == 0);
  CHECK(src == 3 && EQ(u, "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3\rPID|1||1||GR\xC3\x9CN\r"));
  /* ...and the bytes go back as they came, without an MSH-18. */
  cad_str_t out;
  REQUIRE(cad_charset_msg_out(u, src, CAD_CS_NONE, CAD_CS_REJECT, &a, &out, &dg) == 0);
  CHECK(out.len == sizeof NO18 - 1 && memcmp(out.p, NO18, out.len) == 0);
  /* A channel default of ASCII refuses the 0xDC: 102 where it is. */
  CHECK(cad_charset_msg_in(&m, CAD_CS_ASCII, &a, &u, &src, &dg) == CAD_E_INVAL);
  CHECK(dg.hl7_code == 102 && dg.segment == 2 && dg.field == 5 && strcmp(dg.seg_id, "PID") == 0);
  CHECK(strstr(dg.reason, "channel") != NULL);
  /* An undeclared message to a UTF-8 destination: read as Windows-1252. */
  REQUIRE(cad_charset_msg_out(m.input, CAD_CS_NONE, CAD_CS_UTF8, CAD_CS_REJECT, &a, &out, &dg) ==
          0);
  CHECK(
      EQ(out, "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.3||||||UNICODE UTF-8\rPID|1||1||GR\xC3\x9CN\r"));
  cad_arena_free(&a);
}

TEST(set_msh18) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1 << 20);
  cad_str_t out;
  REQUIRE(cad_charset_set_msh18(S("MSH|^~\\&|A|B\rPID|1\r"), "8859/1", &a, &out) == 0);
  CHECK(EQ(out,
           "MSH|^~\\&|A|B"
           "||||||||||||||"
           "8859/1\rPID|1\r"));
  REQUIRE(cad_charset_set_msh18(S("MSH|^~\\&|1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|ASCII|19\r"),
                                "UNICODE UTF-8", &a, &out) == 0);
  CHECK(EQ(out, "MSH|^~\\&|1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|UNICODE UTF-8|19\r"));
  REQUIRE(
      cad_charset_set_msh18(S("MSH|^~\\&|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|latin1~ISO IR87"),
                            "8859/1", &a, &out) == 0);
  CHECK(EQ(out, "MSH|^~\\&|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|8859/1~ISO IR87"));
  /* Other delimiters. */
  REQUIRE(cad_charset_set_msh18(S("MSH#$%!@#A\nPID#1"), "ASCII", &a, &out) == 0);
  CHECK(EQ(out,
           "MSH#$%!@#A"
           "###############"
           "ASCII\nPID#1"));
  /* Already so: the same bytes, not a copy. */
  cad_str_t same = S("MSH|^~\\&|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|8859/1\r");
  REQUIRE(cad_charset_set_msh18(same, "8859/1", &a, &out) == 0);
  CHECK(out.p == same.p);
  CHECK(cad_charset_set_msh18(S("PID|1|2|3|4"), "ASCII", &a, &out) == CAD_E_NOMSH);
  /* A label holding a delimiter of the message is refused. */
  CHECK(cad_charset_set_msh18(S("MSH/^~\\&/A"), "8859/1", &a, &out) == CAD_E_INVAL);
  cad_arena_free(&a);
}

TEST(locate) {
  cad_hl7_diag_t dg;
  cad_str_t m = S("MSH|^~\\&|A|B\r\r\nPID|1||x\xE9y|\nOBX|1");
  cad_charset_locate(m, 23, &dg); /* the 0xE9 */
  CHECK(dg.segment == 2 && strcmp(dg.seg_id, "PID") == 0 && dg.field == 3);
  cad_charset_locate(m, 11, &dg); /* MSH-4 */
  CHECK(dg.segment == 1 && strcmp(dg.seg_id, "MSH") == 0 && dg.field == 4);
  cad_charset_locate(m, m.len - 1, &dg);
  CHECK(dg.segment == 3 && strcmp(dg.seg_id, "OBX") == 0 && dg.field == 1);
  cad_charset_locate(m, 1000, &dg); /* past the end: clamped */
  CHECK(dg.segment == 3);
}

/* The ACK says the set of the message it answers. */
TEST(ack_echoes_msh18) {
  cad_arena_t a;
  cad_arena_init(&a, 8192, 1 << 20);
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, CERNER, sizeof CERNER - 1, &a, NULL, NULL) == 0);
  cad_ack_msh_t h;
  REQUIRE(cad_ack_msh_from_msg(&m, &h) == 0);
  cad_ack_opts_t o = {CAD_ACK_STYLE_AUTO, CAD_ACK_ACCEPT, "ACK1", 1767323045, 0, NULL};
  cad_buf_t b = CAD_BUF_INIT;
  REQUIRE(cad_ack_build(&h, &o, &b) == 1);
  CHECK(memmem(b.data, b.len, "|P|2.3||||||8859/1\rMSA|AA|Q150084616T145947960", 46) != NULL);
  /* The tolerant reader (a message the parser refused) finds it too. */
  cad_ack_msh_t s;
  REQUIRE(cad_ack_msh_scan(CERNER, sizeof CERNER - 1, 0, &s) == 0);
  CHECK(EQ(s.charset, "8859/1"));
  /* Without MSH-18 the ACK ends at MSH-12 as before. */
  static const char NO18[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|X1|P|2.5.1\r";
  REQUIRE(cad_hl7_parse(&m, NO18, sizeof NO18 - 1, &a, NULL, NULL) == 0);
  REQUIRE(cad_ack_msh_from_msg(&m, &h) == 0);
  b.len = 0;
  REQUIRE(cad_ack_build(&h, &o, &b) == 1);
  CHECK(memmem(b.data, b.len, "|P|2.5.1\rMSA|AA|X1", 18) != NULL);
  cad_buf_free(&b);
  cad_arena_free(&a);
}

TEST_MAIN()
