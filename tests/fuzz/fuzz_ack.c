/* fuzz_ack.c - the ACK builder's reader of untrusted headers (parsers/hl7/ack.h).
 *
 * For any input: cad_ack_msh_scan() (the tolerant reader used when the parser
 * refused a message) and, when the input parses, cad_ack_msh_from_msg(); for
 * every header read, build the ACK in each status and style and check that
 * it is a message our own parser reads back, addressed to the inbound one:
 * MSH first, MSA-1 the status asked for, MSA-2 the inbound MSH-10 byte for
 * byte, an ERR segment exactly when the status is not "accept".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ack.h"
#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                              \
  do {                                         \
    fprintf(stderr, "fuzz_ack: " __VA_ARGS__); \
    fputc('\n', stderr);                       \
    abort();                                   \
  } while (0)

static void check_ack(const cad_ack_msh_t *h, cad_ack_status_t st, cad_ack_style_t style,
                      cad_arena_t *a) {
  cad_hl7_diag_t dg = {.code = CAD_E_SEGMENT,
                       .hl7_code = 102,
                       .segment = 2,
                       .field = 3,
                       .seg_id = "PID",
                       .reason = "fuzz"};
  cad_ack_opts_t o = {.style = style,
                      .status = st,
                      .control_id = "CAD1",
                      .now = 1700000000,
                      .utc_offset_min = 60,
                      .diag = &dg};
  cad_buf_t out = CAD_BUF_INIT;
  int rc = cad_ack_build(h, &o, &out);
  if (rc < 0 && rc != CAD_E_NOMEM) FAIL("cad_ack_build: %s", cad_strerror(rc));
  if (rc == 1) {
    cad_hl7_msg_t m;
    cad_hl7_diag_t d;
    cad_arena_reset(a);
    rc = cad_hl7_parse(&m, out.data, out.len, a, NULL, &d);
    if (rc == CAD_E_NOMEM) goto done;
    if (rc != 0) FAIL("the ACK does not parse: %s (%s)", cad_strerror(rc), d.reason);
    if (m.nsegs < 2 || strcmp(m.segs[0].name, "MSH") != 0 || strcmp(m.segs[1].name, "MSA") != 0)
      FAIL("the ACK is not MSH, MSA, ...");
    cad_str_t msa1, msa2;
    if (!cad_hl7_field(&m.segs[1], 1, &msa1) || msa1.len != 2) FAIL("MSA-1 missing");
    const char want = st == CAD_ACK_ACCEPT ? 'A' : st == CAD_ACK_ERROR ? 'E' : 'R';
    if (msa1.p[1] != want) FAIL("MSA-1 is %.2s for status %d", msa1.p, (int)st);
    if (!cad_hl7_field(&m.segs[1], 2, &msa2)) msa2 = (cad_str_t){"", 0};
    if (msa2.len != h->control_id.len ||
        (msa2.len && memcmp(msa2.p, h->control_id.p, msa2.len) != 0))
      FAIL("MSA-2 is not the inbound MSH-10");
    bool err = false;
    for (uint32_t i = 2; i < m.nsegs; i++) err |= strcmp(m.segs[i].name, "ERR") == 0;
    if (err != (st != CAD_ACK_ACCEPT))
      FAIL("ERR segment %s for status %d", err ? "present" : "absent", (int)st);
  }
done:
  cad_buf_free(&out);
}

static void check_all(const cad_ack_msh_t *h, cad_arena_t *a) {
  for (int st = CAD_ACK_ACCEPT; st <= CAD_ACK_REJECT; st++)
    for (int style = CAD_ACK_STYLE_AUTO; style <= CAD_ACK_STYLE_ENHANCED; style++)
      check_ack(h, (cad_ack_status_t)st, (cad_ack_style_t)style, a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  const char *p = (const char *)data;
  cad_arena_t a, b;
  cad_arena_init(&a, 4096, 1u << 20);
  cad_arena_init(&b, 4096, 1u << 20);
  cad_ack_msh_t h;
  if (cad_ack_msh_scan(p, size, 0, &h) == 0) check_all(&h, &a);
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, p, size, &b, NULL, NULL) == 0 && cad_ack_msh_from_msg(&m, &h) == 0)
    check_all(&h, &a);
  cad_arena_free(&a);
  cad_arena_free(&b);
  return 0;
}
