/* fuzz_http_answer.c - what the HTTP destination reads from a server it
 * does not trust (channels/http/http_client.h): OAuth2 token responses
 * (JSON through jansson), Retry-After values, and the ACK-to-status mapping
 * of the HTTP source's answers (engine/runtime/src_http.h); plus URL
 * templates filled from a message.
 *
 * Input: the first byte picks the part; the rest is copied into a buffer of
 * its exact size, so a read past it faults under ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cad_mem.h"
#include "hl7.h"
#include "http_client.h"
#include "src_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t n = size - 1;
  char *p = malloc(n ? n : 1);
  if (!p) return 0;
  memcpy(p, data + 1, n);
  switch (data[0] % 4) {
    case 0: {
      char tok[64];
      int64_t exp = -1;
      if (cad_http_oauth_parse(p, n, tok, sizeof tok, &exp) == 0) {
        if (strlen(tok) == 0 || strlen(tok) >= sizeof tok || exp < 0) abort();
      }
      break;
    }
    case 1: {
      int64_t ms = cad_http_retry_after(p, n, 1800000000);
      if (ms < -1 || ms > 3600 * 1000) abort();
      break;
    }
    case 2: {
      /* a message fills a URL template: the result is URL-safe */
      cad_arena_t a;
      cad_arena_init(&a, 4096, 1 << 20);
      cad_hl7_msg_t m;
      memset(&m, 0, sizeof m);
      cad_http_tmpl_t *t = NULL;
      char err[128];
      if (cad_hl7_parse(&m, p, n, &a, NULL, NULL) == 0 &&
          cad_http_tmpl_compile("http://h/${MSH-10}/${PID-3[1].1}?x=${OBX[*]-5}", &t, err,
                                sizeof err) == 0) {
        char *u = cad_http_tmpl_render(t, &m, true);
        for (const char *c = u ? u + 9 : ""; *c; c++)
          if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) abort();
        free(u);
        u = cad_http_tmpl_render(t, &m, false);
        for (const char *c = u ? u : ""; *c; c++)
          if ((unsigned char)*c < 0x20 || *c == 0x7f) abort();
        free(u);
      }
      cad_http_tmpl_free(t);
      cad_arena_free(&a);
      break;
    }
    case 3: {
      /* the listen_http source's status for an ACK */
      int st = cad__src_http_status(p, n);
      if (st != 200 && st != 422 && st != 503 && st != 500) abort();
      break;
    }
  }
  free(p);
  return 0;
}
