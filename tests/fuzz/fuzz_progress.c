/* fuzz_progress.c - the directory source's progress files read back after
 * a restart (engine/runtime/src_dir.h, cad__dir_progress_parse): the file
 * sits in <dir>/.caduceus/, which a hostile writer to the watched folder
 * might have created first.
 *
 * For any input: either CAD_E_INVAL, or a result whose invariants hold (a
 * format the stream reader knows, resume point within the file, a name
 * without NUL or '/', the reason lines inside the input and ending before
 * its crc line).  Inputs are copied to a buffer of exactly their size, so
 * an over-read faults under ASan.  An input whose first byte is '+' gets a
 * correct crc line appended to the rest, so the fuzzer explores what lies
 * behind the check too. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "cad_error.h"
#include "src_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                   \
  do {                                              \
    fprintf(stderr, "fuzz_progress: " __VA_ARGS__); \
    fputc('\n', stderr);                            \
    abort();                                        \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bool fix = size > 0 && data[0] == '+';
  if (fix) data++, size--;
  char *buf = malloc(size + 16);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  if (fix) {
    char tail[16];
    snprintf(tail, sizeof tail, "crc %08lx\n",
             (unsigned long)crc32(0, (const Bytef *)buf, (uInt)size));
    memcpy(buf + size, tail, 13);
    size += 13;
    char *exact = malloc(size);
    if (!exact) {
      free(buf);
      return 0;
    }
    memcpy(exact, buf, size);
    free(buf);
    buf = exact;
  }
  cad_dir_progress_t p;
  int rc = cad__dir_progress_parse(buf, size, &p);
  if (rc != 0 && rc != CAD_E_INVAL) FAIL("unexpected %d", rc);
  if (rc == 0) {
    if (p.fmt < 0 || p.fmt > 2) FAIL("format %d", p.fmt);
    if (p.size < 0 || p.roff > (uint64_t)p.size || p.rnum > p.done) FAIL("resume point");
    if (strlen(p.name) >= sizeof p.name) FAIL("name");
    if (p.reasons < buf || p.reasons + p.reasons_len > buf + size) FAIL("reasons outside");
    for (size_t i = 0; i < p.reasons_len; i++)
      if (p.reasons[i] == 0) FAIL("a NUL in the reasons");
  }
  free(buf);
  return 0;
}
