/* fuzz_hl7_charset.c - the character set decoder and encoder
 * (parsers/hl7/hl7_charset.h) on untrusted bytes.
 *
 * The first input byte picks a set (and a policy); the rest is a message.
 * For any input: decode it in that set; when it decodes, the result is
 * valid UTF-8 and encoding it back gives the same bytes (every set here is a
 * bijection on the bytes it defines); a refusal names an offset inside the
 * input.  Encoding arbitrary bytes as UTF-8 to the set under each policy
 * never fails but for REJECT (or ESCAPE without an escape character) or
 * input that is not UTF-8, and its output is in the set.  When the rest
 * parses, the message path (cad_charset_msg_in, cad_charset_msg_out to
 * UTF-8 and back) holds the same properties, and MSH-18 rewriting keeps a
 * message the parser reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"
#include "hl7_charset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                      \
  do {                                                 \
    fprintf(stderr, "fuzz_hl7_charset: " __VA_ARGS__); \
    fputc('\n', stderr);                               \
    abort();                                           \
  } while (0)

static void round_trip(int id, cad_str_t in, cad_arena_t *a) {
  cad_str_t u, back;
  size_t bad = SIZE_MAX;
  int rc = cad_charset_decode(id, in, a, &u, &bad);
  if (rc == CAD_E_INVAL) {
    if (bad >= in.len) FAIL("decode: offset %zu outside %zu bytes", bad, in.len);
    return;
  }
  /* The arena (64 MiB) holds any conversion of a 1 MiB input: out of
   * memory is a sizing bug, not an outcome. */
  if (rc != 0) FAIL("decode: %s", cad_err_name(rc));
  if (!cad_hl7_is_utf8(u.p, u.len)) FAIL("decode: not UTF-8");
  rc = cad_charset_encode(id, u, CAD_CS_REJECT, '\\', a, &back, &bad, NULL);
  if (rc != 0) FAIL("encode back: %s", cad_err_name(rc));
  if (back.len != in.len || memcmp(back.p, in.p, in.len) != 0) FAIL("round trip differs");
}

static void encode_any(int id, cad_str_t in, cad_arena_t *a) {
  bool utf8 = cad_hl7_is_utf8(in.p, in.len);
  for (int pol = CAD_CS_REJECT; pol <= CAD_CS_ESCAPE; pol++) {
    for (int e = 0; e < 2; e++) {
      cad_arena_mark_t mark = cad_arena_mark(a); /* each try starts afresh */
      cad_str_t out;
      size_t bad = SIZE_MAX, changed = 0;
      int rc =
          cad_charset_encode(id, in, (cad_cs_policy_t)pol, e ? '\\' : 0, a, &out, &bad, &changed);
      if (rc == CAD_E_NOMEM) FAIL("encode: out of memory (sizing)");
      if (!utf8) {
        if (rc != CAD_E_INVAL || bad >= in.len) FAIL("non-UTF-8 input accepted");
        continue;
      }
      if (rc == CAD_E_INVAL) {
        if (pol == CAD_CS_REPLACE || (pol == CAD_CS_ESCAPE && e)) FAIL("policy %d refused", pol);
        if (bad >= in.len) FAIL("encode: offset %zu outside %zu", bad, in.len);
        continue;
      }
      if (rc != 0) FAIL("encode: %s", cad_err_name(rc));
      /* What was written reads back in the set. */
      cad_str_t u;
      int r2 = cad_charset_decode(id, out, a, &u, NULL);
      if (r2 != 0) FAIL("encoded output does not decode: %s", cad_err_name(r2));
      if (changed == 0 && (u.len != in.len || memcmp(u.p, in.p, in.len) != 0))
        FAIL("nothing replaced, yet the text changed");
      cad_arena_rewind(a, mark);
    }
  }
}

static void message_path(int id, cad_str_t in, cad_arena_t *a) {
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, in.p, in.len, a, NULL, NULL) != 0) return;
  cad_str_t u, out;
  int src = -1;
  cad_hl7_diag_t dg;
  memset(&dg, 0, sizeof dg);
  int rc = cad_charset_msg_in(&m, id, a, &u, &src, &dg);
  if (rc == CAD_E_NOMEM) return;
  if (rc < 0) {
    if (dg.hl7_code != 102 && dg.hl7_code != 103 && dg.hl7_code != 207) FAIL("msg_in code");
    if (dg.segment == 0) FAIL("msg_in: no segment");
    return;
  }
  if (src != CAD_CS_NONE && !cad_hl7_is_utf8(u.p, u.len)) FAIL("msg_in: not UTF-8");
  rc = cad_charset_msg_out(u, src, CAD_CS_NONE, CAD_CS_REJECT, a, &out, &dg);
  if (rc == CAD_E_NOMEM) return;
  if (rc != 0) FAIL("msg_out back to its own set: %s", cad_err_name(rc));
  if (out.len != in.len || memcmp(out.p, in.p, in.len) != 0) FAIL("msg_out: bytes changed");
  for (int want = 1; want <= cad_charset_count(); want += 7) {
    if (!cad_charset_writable(want)) continue;
    rc = cad_charset_msg_out(u, src, want, CAD_CS_ESCAPE, a, &out, &dg);
    if (rc == CAD_E_NOMEM || rc == CAD_E_INVAL) continue;
    if (rc == CAD_E_NOMSH || rc == CAD_E_DELIM) continue;
    if (rc != 0) FAIL("msg_out to %s: %s", cad_charset_name(want), cad_err_name(rc));
    cad_hl7_msg_t o;
    if (cad_hl7_parse(&o, out.p, out.len, a, NULL, NULL) == 0 &&
        cad_charset_declared(&o, NULL) != want)
      FAIL("MSH-18 does not say %s", cad_charset_name(want));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  int id = 1 + data[0] % cad_charset_count();
  cad_str_t in = {(const char *)data + 1, size - 1};
  cad_arena_t a;
  cad_arena_init(&a, 16384, 64u << 20);
  round_trip(id, in, &a);
  cad_arena_reset(&a);
  encode_any(id, in, &a);
  cad_arena_reset(&a);
  message_path(data[0] & 0x80 ? id : CAD_CS_NONE, in, &a);
  cad_arena_free(&a);
  return 0;
}
