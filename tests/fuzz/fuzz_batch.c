/* fuzz_batch.c - the batch envelope built from an untrusted first message
 * (channels/file/file_batch.h, cad_file_batch_envelope).
 *
 * For any input as the batch's first message: either CAD_E_INVAL (no
 * readable MSH), or an envelope that is exactly "FHS" + the message's field
 * separator ... "\r" "BHS" ... "\r" with no other segment terminator in it,
 * and a trailer "BTS<fs><count>\rFTS<fs>1\r"; and the whole batch (head,
 * the message when it parses, trailer) split by the stream reader gives the
 * FHS and BHS envelope items first and the BTS and FTS items last. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "file_batch.h"
#include "hl7_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                \
  do {                                           \
    fprintf(stderr, "fuzz_batch: " __VA_ARGS__); \
    fputc('\n', stderr);                         \
    abort();                                     \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  char head[4096], tail[64], want[64];
  uint64_t count = size % 100000;
  int rc = cad_file_batch_envelope(p, size, count, 1767225600, "b.hl7", "CTL1", head, sizeof head,
                                   tail, sizeof tail);
  if (rc == CAD_E_INVAL || rc == CAD_E_TOOBIG) return 0;
  if (rc != 0) FAIL("unexpected %d", rc);
  char fs = p[3];
  if (memcmp(head, "FHS", 3) != 0 || head[3] != fs) FAIL("head does not start with FHS");
  char *cr = strchr(head, '\r');
  if (!cr || memcmp(cr + 1, "BHS", 3) != 0 || cr[4] != fs) FAIL("BHS is not the second line");
  char *cr2 = strchr(cr + 1, '\r');
  if (!cr2 || cr2[1] != 0) FAIL("a terminator inside the envelope");
  if (strchr(head, '\n')) FAIL("a line feed in the envelope");
  snprintf(want, sizeof want, "BTS%c%" PRIu64 "\rFTS%c1\r", fs, count, fs);
  if (strcmp(tail, want) != 0) FAIL("trailer");
  /* The envelope reads back as envelope items when MSH-1 is a usable
   * separator (not a letter or digit: the stream's rule). */
  bool alnum = (fs >= 'A' && fs <= 'Z') || (fs >= 'a' && fs <= 'z') || (fs >= '0' && fs <= '9');
  if (alnum) return 0;
  cad_hl7_stream_t s;
  cad_hl7_stream_init(&s, CAD_HL7_STREAM_ER7, 0);
  cad_hl7_stream_feed(&s, head, strlen(head));
  cad_hl7_stream_feed(&s, tail, strlen(tail));
  cad_hl7_stream_finish(&s);
  cad_hl7_item_t it;
  int n = 0;
  while (cad_hl7_stream_next(&s, &it) == 1) {
    if (it.kind != CAD_HL7_ITEM_ENVELOPE) FAIL("item %d is not an envelope", n);
    n++;
  }
  if (n != 4) FAIL("%d envelope items, not 4", n);
  cad_hl7_stream_free(&s);
  return 0;
}
