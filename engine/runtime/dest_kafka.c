/* dest_kafka.c - the `kafka` destination kind
 * (channels/kafka/kafka_dest.h). */
#include <stdlib.h>

#include "cad_error.h"
#include "dest_kinds_int.h"
#include "kafka_dest.h"

typedef struct kafka_kind {
  cad_kafka_dest_t *d;
  /* The worker's callback: the same for every message of a destination. */
  cad_deliver_done_cb done;
  void *done_ctx;
} kafka_kind_t;

static int kafka_open(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err,
                      size_t cap) {
  kafka_kind_t *k = calloc(1, sizeof *k);
  if (!k) return CAD_E_NOMEM;
  int rc = cad_kafka_dest_open(loop, &cd->kafka, &k->d, err, cap);
  if (rc < 0) {
    free(k);
    return rc;
  }
  *impl = k;
  return 0;
}

static void kafka_done(void *ud, int outcome, const char *detail) {
  kafka_kind_t *k = ud;
  k->done(k->done_ctx,
          outcome == CAD_KAFKA_OK     ? CAD_DELIVER_OK
          : outcome == CAD_KAFKA_FAIL ? CAD_DELIVER_FAIL
                                      : CAD_DELIVER_RETRY,
          detail);
}

static int kafka_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                         cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  kafka_kind_t *k = impl;
  k->done = done;
  k->done_ctx = ctx;
  return cad_kafka_dest_deliver(k->d, p, len, kafka_done, k);
}

static void kafka_close(void *impl) {
  kafka_kind_t *k = impl;
  if (!k) return;
  cad_kafka_dest_close(k->d);
  free(k);
}

/* Up to 64 messages in flight; reports answered in order. */
const cad_dest_kind_t cad_dest_kind_kafka = {CAD_DEST_KAFKA, "kafka",          kafka_open,
                                             kafka_deliver,  CAD_KAFKA_WINDOW, kafka_close};
