/* dest_http.c - the `http` destination kind (channels/http/http_client.h). */
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "dest_kinds_int.h"
#include "http_client.h"
#include "log.h"

typedef struct http_kind {
  const cad_conf_dest_t *cd;
  cad_http_dest_t *h;
  cad_arena_t arena; /* parse of the message being sent (its URL and headers) */
  bool needs_msg;
  cad_deliver_done_cb done;
  void *done_ctx;
} http_kind_t;

/* The Content-Type: the destination's own `content_type:`, else its
 * format's (cad_http_content_type_for).  Destinations have no `format:` on
 * this branch yet: when they do, pass its name here instead of NULL. */
static const char *content_type_of(const cad_conf_dest_t *cd) {
  if (cd->http.content_type) return cd->http.content_type;
  /* The media type of the destination's `format:` (the payload step has
   * converted the message before it reaches this kind). */
  return cad_http_content_type_for(cad_format_name(cd->format));
}

static int http_open(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err,
                     size_t cap) {
  http_kind_t *k = calloc(1, sizeof *k);
  if (!k) return CAD_E_NOMEM;
  k->cd = cd;
  cad_arena_init(&k->arena, 16384, 0);
  int rc = cad_http_dest_open(loop, &cd->http, content_type_of(cd), &k->h, err, cap);
  if (rc < 0) {
    cad_arena_free(&k->arena);
    free(k);
    return rc;
  }
  k->needs_msg = cad_http_dest_needs_msg(k->h);
  *impl = k;
  return 0;
}

static void http_sent(void *arg, int outcome, const char *detail) {
  http_kind_t *k = arg;
  cad_http_answer_t a;
  cad_http_dest_answer(k->h, &a);
  if (CAD_LOG_ON(CAD_LOG_DEBUG) && a.status) {
    /* The answer's body may hold patient data: debug level only. */
    CAD_LOG(CAD_LOG_DEBUG, "http.answer", NULL,
            "destination=%s status=%ld content_type=%s body=%.*s%s", k->cd->name, a.status,
            a.content_type, (int)a.body_len, a.body, a.body_cut ? " (cut)" : "");
  }
  k->done(k->done_ctx,
          outcome == CAD_HTTP_OK     ? CAD_DELIVER_OK
          : outcome == CAD_HTTP_FAIL ? CAD_DELIVER_FAIL
                                     : CAD_DELIVER_RETRY,
          detail);
}

static int http_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  http_kind_t *k = impl;
  cad_hl7_msg_t m;
  memset(&m, 0, sizeof m);
  bool have = false;
  if (k->needs_msg) {
    cad_arena_reset(&k->arena);
    have = cad_hl7_parse(&m, p, len, &k->arena, NULL, NULL) == 0;
  }
  k->done = done;
  k->done_ctx = ctx;
  return cad_http_dest_send(k->h, have ? &m : NULL, p, len, http_sent, k);
}

static void http_close(void *impl) {
  http_kind_t *k = impl;
  if (!k) return;
  cad_http_dest_close(k->h);
  cad_arena_free(&k->arena);
  free(k);
}

/* One request at a time: ordered parallel delivery would give it a window. */
const cad_dest_kind_t cad_dest_kind_http = {CAD_DEST_HTTP, "http", http_open,
                                            http_deliver,  1,      http_close};
