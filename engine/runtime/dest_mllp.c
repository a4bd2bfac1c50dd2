/* dest_mllp.c - the `mllp` destination kind (channels/mllp/mllp_sender.h). */
#include <stdlib.h>

#include "cad_error.h"
#include "dest_kinds_int.h"
#include "mllp_sender.h"
#include "transport.h"

typedef struct mllp_kind {
  cad_mllp_sender_t *s;
  cad_tls_ctx_t *tls; /* over TLS, or NULL */
  cad_deliver_done_cb done;
  void *done_ctx;
} mllp_kind_t;

static int mllp_open(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err,
                     size_t cap) {
  mllp_kind_t *m = calloc(1, sizeof *m);
  if (!m) return CAD_E_NOMEM;
  int rc = 0;
  if (cd->mllp.tls_enabled) rc = cad_tls_client_ctx_new(&cd->mllp.tls, &m->tls, err, cap);
  if (rc == 0) {
    cad_mllp_sender_opts_t mo = cd->mllp.sender;
    mo.tls = m->tls;
    rc = cad_mllp_sender_new(loop, &mo, &m->s, err, cap);
  }
  if (rc < 0) {
    cad_tls_ctx_unref(m->tls);
    free(m);
    return rc;
  }
  *impl = m;
  return 0;
}

static void mllp_sent(void *ctx, int outcome, const char *detail) {
  mllp_kind_t *m = ctx;
  m->done(m->done_ctx,
          outcome == CAD_MLLP_SEND_OK     ? CAD_DELIVER_OK
          : outcome == CAD_MLLP_SEND_FAIL ? CAD_DELIVER_FAIL
                                          : CAD_DELIVER_RETRY,
          detail);
}

static int mllp_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  mllp_kind_t *m = impl;
  m->done = done;
  m->done_ctx = ctx;
  return cad_mllp_sender_deliver(m->s, p, len, seq, mllp_sent, m);
}

static void mllp_close(void *impl) {
  mllp_kind_t *m = impl;
  if (!m) return;
  cad_mllp_sender_close(m->s, NULL, NULL);
  cad_tls_ctx_unref(m->tls);
  free(m);
}

/* One message at a time: the receiver's ACK answers it. */
const cad_dest_kind_t cad_dest_kind_mllp = {CAD_DEST_MLLP, "mllp", mllp_open,
                                            mllp_deliver,  1,      mllp_close};
