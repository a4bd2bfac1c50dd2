/* fuzz_mllp_ack.c - how the outbound MLLP sender reads a receiver's reply
 * (cad__mllp_ack_read, channels/mllp/mllp_sender_int.h): any bytes a receiver may
 * send back.
 *
 * The input is CONTROL_ID NUL FRAME (no NUL: the whole input is the frame
 * and the control id is empty).  The frame is read twice: against that
 * control id, and against the frame's own MSA-2 (so that the paths after a
 * matching ACK are reached often).  Checks: a verdict from the list; a code
 * exactly for the three ACK verdicts and matching them; the receiver's text
 * without control bytes and only for AE/AR; a matching MSA-2 whenever the
 * verdict says so.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_mem.h"
#include "hl7.h"
#include "mllp_sender_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                   \
  do {                                              \
    fprintf(stderr, "fuzz_mllp_ack: " __VA_ARGS__); \
    fputc('\n', stderr);                            \
    abort();                                        \
  } while (0)

static void check(cad_str_t frame, cad_str_t ctl) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1u << 20);
  cad__mllp_ack_t v;
  int r = cad__mllp_ack_read(frame, ctl, &a, &v);
  if (r != (int)v.verdict || r < CAD__ACK_ACCEPT || r > CAD__ACK_OTHER_MESSAGE)
    FAIL("verdict %d / %d", r, (int)v.verdict);
  bool ack = r <= CAD__ACK_REJECT;
  if (ack != (v.code[0] != 0)) FAIL("code '%s' with verdict %d", v.code, r);
  if (ack) {
    if (strlen(v.code) != 2 || (v.code[0] != 'A' && v.code[0] != 'C')) FAIL("code '%s'", v.code);
    char want = r == CAD__ACK_ACCEPT ? 'A' : r == CAD__ACK_ERROR ? 'E' : 'R';
    if (v.code[1] != want) FAIL("code '%s' with verdict %d", v.code, r);
    /* The verdict says MSA-2 matched: check it ourselves. */
    cad_arena_t b;
    cad_arena_init(&b, 4096, 0);
    cad_hl7_msg_t m;
    if (cad_hl7_parse(&m, frame.p, frame.len, &b, NULL, NULL) != 0) FAIL("accepted unparseable");
    int i = cad_hl7_find_seg(&m, cad_hl7_segid("MSA"), 1, 0);
    cad_str_t ref = {NULL, 0};
    if (i < 0) FAIL("an ACK without MSA");
    cad_hl7_field(&m.segs[i], 2, &ref);
    if (ref.len != ctl.len || (ref.len && memcmp(ref.p, ctl.p, ref.len) != 0))
      FAIL("MSA-2 does not match but the verdict is %d", r);
    cad_arena_free(&b);
  }
  if (r == CAD__ACK_ACCEPT && v.reason[0]) FAIL("a reason with AA");
  for (const char *p = v.reason; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) FAIL("a control byte in the reason");
  if (!memchr(v.reason, 0, sizeof v.reason) || !memchr(v.why, 0, sizeof v.why))
    FAIL("text not terminated");
  cad_arena_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  const char *p = (const char *)data;
  const char *nul = memchr(p, 0, size);
  cad_str_t ctl = {"", 0}, frame = {p, size};
  if (nul) {
    ctl = (cad_str_t){p, (size_t)(nul - p)};
    frame = (cad_str_t){nul + 1, size - (size_t)(nul - p) - 1};
  }
  check(frame, ctl);
  /* Against its own MSA-2. */
  cad_arena_t a;
  cad_arena_init(&a, 4096, 1u << 20);
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, frame.p, frame.len, &a, NULL, NULL) == 0) {
    int i = cad_hl7_find_seg(&m, cad_hl7_segid("MSA"), 1, 0);
    cad_str_t ref = {"", 0};
    if (i >= 0 && cad_hl7_field(&m.segs[i], 2, &ref) && ref.len) check(frame, ref);
  }
  cad_arena_free(&a);
  return 0;
}
