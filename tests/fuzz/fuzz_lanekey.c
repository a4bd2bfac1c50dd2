/* fuzz_lanekey.c - libFuzzer target for order_by keys (engine/runtime/lanes.h).
 *
 * Input: the order_by text up to the first newline, then a message.  The
 * text is compiled; on error the reported position must lie inside it.  On
 * success the key of the message (and of a fixed one) is computed: its
 * length stays within the buffer, the lane within the lane count, and the
 * same message always gives the same lane.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "lanes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                  \
  do {                                             \
    fprintf(stderr, "fuzz_lanekey: " __VA_ARGS__); \
    fputc('\n', stderr);                           \
    abort();                                       \
  } while (0)

static const char SAMPLE[] =
    "MSH|^~\\&|APP|FAC|||20240101||ORU^R01|1|P|2.5\r"
    "PID|1||A^^^H^MR~B^^^O^PI||DOE^JOHN||19800101|M\r"
    "OBX|1|NM|X||5\r";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *nl = memchr(data, '\n', size);
  size_t tlen = nl ? (size_t)(nl - (const char *)data) : size;
  if (tlen > 4096) return 0;
  char *text = malloc(tlen + 1);
  if (!text) return 0;
  memcpy(text, data, tlen);
  text[tlen] = 0;
  cad_lanekey_t *k = NULL;
  char err[160];
  size_t at = 0;
  int rc = cad_lanekey_compile(text, &k, err, sizeof err, &at);
  if (rc == 0) {
    const char *msg = nl ? nl + 1 : SAMPLE;
    size_t mlen = nl ? size - tlen - 1 : sizeof SAMPLE - 1;
    cad_arena_t a;
    cad_arena_init(&a, 4096, 1 << 20);
    for (unsigned n = 1; n <= 64; n *= 4) {
      cad_arena_reset(&a);
      unsigned l1 = cad_lanekey_lane(k, msg, mlen, n, &a);
      cad_arena_reset(&a);
      unsigned l2 = cad_lanekey_lane(k, msg, mlen, n, &a);
      if (l1 >= n || l1 != l2) FAIL("lane %u then %u of %u", l1, l2, n);
    }
    cad_arena_reset(&a);
    cad_hl7_msg_t m;
    if (cad_hl7_parse(&m, SAMPLE, sizeof SAMPLE - 1, &a, NULL, NULL) == 0) {
      char key[32];
      size_t n = cad_lanekey_key(k, &m, key, sizeof key);
      if (n > sizeof key) FAIL("key of %zu bytes in %zu", n, sizeof key);
    }
    cad_arena_free(&a);
    cad_lanekey_free(k);
  } else if (rc == CAD_E_INVAL) {
    if (k) FAIL("a key returned with an error");
    if (at > tlen) FAIL("error at %zu past the end (%zu)", at, tlen);
    if (!err[0]) FAIL("an error without a reason");
  }
  free(text);
  return 0;
}
