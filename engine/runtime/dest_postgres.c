/* dest_postgres.c - the `postgres` destination kind
 * (channels/postgres/pg_dest.h). */
#include <stdlib.h>

#include "cad_error.h"
#include "dest_kinds_int.h"
#include "pg_dest.h"

typedef struct pg_kind {
  cad_pg_dest_t *d;
  /* The worker's callback: the same for every message of a destination. */
  cad_deliver_done_cb done;
  void *done_ctx;
} pg_kind_t;

static int pg_open(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err, size_t cap) {
  pg_kind_t *k = calloc(1, sizeof *k);
  if (!k) return CAD_E_NOMEM;
  int rc = cad_pg_dest_open(loop, &cd->postgres, &k->d, err, cap);
  if (rc < 0) {
    free(k);
    return rc;
  }
  *impl = k;
  return 0;
}

static void pg_done(void *ud, int outcome, const char *detail) {
  pg_kind_t *k = ud;
  k->done(k->done_ctx,
          outcome == CAD_PG_OK     ? CAD_DELIVER_OK
          : outcome == CAD_PG_FAIL ? CAD_DELIVER_FAIL
                                   : CAD_DELIVER_RETRY,
          detail);
}

static int pg_deliver(void *impl, const char *p, size_t len, uint64_t seq, cad_deliver_done_cb done,
                      void *ctx) {
  (void)seq;
  pg_kind_t *k = impl;
  k->done = done;
  k->done_ctx = ctx;
  return cad_pg_dest_deliver(k->d, p, len, pg_done, k);
}

static void pg_close(void *impl) {
  pg_kind_t *k = impl;
  if (!k) return;
  cad_pg_dest_close(k->d);
  free(k);
}

/* Messages handed over together share one transaction (up to `batch`). */
const cad_dest_kind_t cad_dest_kind_postgres = {CAD_DEST_POSTGRES, "postgres", pg_open,
                                                pg_deliver,        64,         pg_close};
