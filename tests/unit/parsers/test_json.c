/* test_json.c - the one escaper of untrusted bytes (cad_json.h): every
 * class of bytes that is not UTF-8, control bytes, quotes, line breaks; the
 * output is always valid UTF-8 and never ends its string early. */
#include "cad_json.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *esc(cad_esc_style_t st, const char *p, size_t n) {
  static char out[4096];
  cad_buf_t b = CAD_BUF_INIT;
  (void)st;
  cad_json_str(&b, p, n);
  size_t m = b.len < sizeof out - 1 ? b.len : sizeof out - 1;
  memcpy(out, b.data, m);
  out[m] = 0;
  cad_buf_free(&b);
  return out;
}

static int append(void *ud, const char *p, size_t n) { return cad_buf_append(ud, p, n); }

static char *kv(const char *p, size_t n) {
  static char out[4096];
  cad_buf_t b = CAD_BUF_INIT;
  cad_text_escape(CAD_ESC_KV, p, n, append, &b);
  size_t m = b.len < sizeof out - 1 ? b.len : sizeof out - 1;
  memcpy(out, b.data, m);
  out[m] = 0;
  cad_buf_free(&b);
  return out;
}

#define J(lit) esc(CAD_ESC_JSON, lit, sizeof lit - 1)
#define K(lit) kv(lit, sizeof lit - 1)

/* Is s valid UTF-8 with no byte < 0x20? */
static bool clean_utf8(const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    size_t k = cad_utf8_seq(s + i, n - i);
    if (k == 0 || (unsigned char)s[i] < 0x20) return false;
    i += k;
  }
  return true;
}

TEST(utf8_classes) {
  CHECK_INT(cad_utf8_seq("A", 1), 1);
  CHECK_INT(cad_utf8_seq("\xc3\xa9", 2), 2);
  CHECK_INT(cad_utf8_seq("\xe2\x82\xac", 3), 3);
  CHECK_INT(cad_utf8_seq("\xf0\x9f\x98\x80", 4), 4);
  CHECK_INT(cad_utf8_seq("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
  CHECK_INT(cad_utf8_seq("\xed\x9f\xbf", 3), 3);     /* U+D7FF */
  CHECK_INT(cad_utf8_seq("\xed\xa0\x80", 3), 0);     /* surrogate */
  CHECK_INT(cad_utf8_seq("\xed\xbf\xbf", 3), 0);     /* surrogate */
  CHECK_INT(cad_utf8_seq("\xc0\xaf", 2), 0);         /* overlong */
  CHECK_INT(cad_utf8_seq("\xc1\xbf", 2), 0);         /* overlong */
  CHECK_INT(cad_utf8_seq("\xe0\x80\xaf", 3), 0);     /* overlong */
  CHECK_INT(cad_utf8_seq("\xf0\x80\x80\xaf", 4), 0); /* overlong */
  CHECK_INT(cad_utf8_seq("\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
  CHECK_INT(cad_utf8_seq("\xf5\x80\x80\x80", 4), 0);
  CHECK_INT(cad_utf8_seq("\xff", 1), 0);
  CHECK_INT(cad_utf8_seq("\xfe", 1), 0);
  CHECK_INT(cad_utf8_seq("\x80", 1), 0);         /* stray continuation */
  CHECK_INT(cad_utf8_seq("\xc3", 1), 0);         /* truncated */
  CHECK_INT(cad_utf8_seq("\xe2\x82", 2), 0);     /* truncated */
  CHECK_INT(cad_utf8_seq("\xe2\x28\xa1", 3), 0); /* bad continuation */
  CHECK_INT(cad_utf8_seq("", 0), 0);
}

TEST(json_escapes) {
  CHECK_STR(J("plain"), "\"plain\"");
  CHECK_STR(J("a\"b\\c"), "\"a\\\"b\\\\c\"");
  CHECK_STR(J("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\"");
  CHECK_STR(J("\x01\x1f\x7f"), "\"\\u0001\\u001f\\u007f\"");
  CHECK_STR(esc(CAD_ESC_JSON, "a\0b", 3), "\"a\\u0000b\"");
  /* Valid UTF-8 passes; C1 controls and U+2028/9 are escaped. */
  CHECK_STR(J("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK_STR(J("\xc2\x85\xc2\x9f\xc2\xa0"), "\"\\u0085\\u009f\xc2\xa0\"");
  CHECK_STR(J("\xe2\x80\xa8\xe2\x80\xa9"), "\"\\u2028\\u2029\"");
  /* Every byte that is not UTF-8: \u00XX of that byte. */
  CHECK_STR(J("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");
  CHECK_STR(J("\xc0\xaf"), "\"\\u00c0\\u00af\"");
  CHECK_STR(J("\xf0\x80\x80\xaf"), "\"\\u00f0\\u0080\\u0080\\u00af\"");
  CHECK_STR(J("x\xffy"), "\"x\\u00ffy\"");
  CHECK_STR(J("\xc3(\xe2\x82"), "\"\\u00c3(\\u00e2\\u0082\"");
  CHECK_STR(J("\xf4\x90\x80\x80"), "\"\\u00f4\\u0090\\u0080\\u0080\"");
  /* A valid character right after an invalid byte is kept. */
  CHECK_STR(J("\xff\xc3\xa9"), "\"\\u00ff\xc3\xa9\"");
}

TEST(kv_escapes) {
  CHECK_STR(K("a b"), "a b");
  CHECK_STR(K("\"=\\"), "\\\"=\\\\");
  CHECK_STR(K("\n\r\x01\x7f"), "\\x0a\\x0d\\x01\\x7f");
  CHECK_STR(K("caf\xc3\xa9"), "caf\xc3\xa9");
  CHECK_STR(K("\xed\xa0\x80\xff"), "\\xed\\xa0\\x80\\xff");
  CHECK_STR(K("\xc2\x85\xe2\x80\xa8"), "\\xc2\\x85\\xe2\\x80\\xa8");
}

TEST(every_byte_pair_gives_clean_utf8) {
  /* All 65536 two-byte inputs, and each with a third byte 0x80: the output
   * is always valid UTF-8 without raw control bytes, and a JSON string
   * holds no unescaped quote. */
  char in[3];
  for (unsigned a = 0; a < 256; a++)
    for (unsigned b = 0; b < 256; b++) {
      in[0] = (char)a;
      in[1] = (char)b;
      in[2] = (char)0x80;
      for (size_t n = 2; n <= 3; n++) {
        const char *j = esc(CAD_ESC_JSON, in, n);
        if (!clean_utf8(j)) {
          CHECK(!"json output not clean");
          return;
        }
        size_t L = strlen(j);
        for (size_t i = 1; i + 1 < L; i++)
          if (j[i] == '"' && j[i - 1] != '\\') {
            CHECK(!"unescaped quote");
            return;
          }
        if (!clean_utf8(kv(in, n))) {
          CHECK(!"kv output not clean");
          return;
        }
      }
    }
}

static int stop_after(void *ud, const char *p, size_t n) {
  (void)p;
  (void)n;
  int *left = ud;
  return --*left < 0 ? -7 : 0;
}

TEST(sink_can_stop) {
  int left = 1;
  CHECK_INT(cad_text_escape(CAD_ESC_JSON, "ab\"cd\"ef", 8, stop_after, &left), -7);
}

TEST_MAIN()
