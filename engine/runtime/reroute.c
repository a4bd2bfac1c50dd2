/* reroute.c - a channel's requeued dead letters, routed again (reroute.h). */
#include "reroute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "chan_route.h"

struct cad_reroute {
  cad_queue_t *q;
  const cad_routes_t *routes;
  const cad_conf_channel_t *cc; /* NULL: routes alone, no character sets */
  const cad_hl7_limits_t *limits;
  uint16_t *qids; /* owned copy */
  size_t nqids;
  cad_arena_t arena;
  cad_deliver_done_cb done; /* of the message in flight */
  void *done_ctx;
  char reason[200];
  uint16_t (*lane_fn)(void *ud, size_t i, const char *p, size_t len); /* NULL = qids */
  void *lane_ud;
};

void cad_reroute_set_lanes(cad_reroute_t *r,
                           uint16_t (*fn)(void *ud, size_t i, const char *p, size_t len),
                           void *ud) {
  r->lane_fn = fn;
  r->lane_ud = ud;
}

int cad_reroute_new(cad_queue_t *q, const cad_routes_t *routes, const cad_hl7_limits_t *limits,
                    const uint16_t *dest_qids, size_t ndests, cad_reroute_t **out) {
  cad_reroute_t *r = calloc(1, sizeof *r);
  if (!r) return CAD_E_NOMEM;
  r->qids = malloc((ndests ? ndests : 1) * sizeof *r->qids);
  if (!r->qids) {
    free(r);
    return CAD_E_NOMEM;
  }
  if (ndests) memcpy(r->qids, dest_qids, ndests * sizeof *r->qids);
  r->nqids = ndests;
  r->q = q;
  r->routes = routes;
  r->limits = limits;
  cad_arena_init(&r->arena, 8192, 0);
  *out = r;
  return 0;
}

void cad_reroute_free(cad_reroute_t *r) {
  if (!r) return;
  cad_arena_free(&r->arena);
  free(r->qids);
  free(r);
}

static void appended(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  cad_reroute_t *r = ud;
  r->done(r->done_ctx, status ? CAD_DELIVER_RETRY : CAD_DELIVER_OK,
          status ? cad_err_name(status) : NULL);
}

/* Route p/len; 0 = appended (done runs later), else the outcome now. */
static int route(cad_reroute_t *r, const char *p, size_t len, cad_deliver_outcome_t *now) {
  cad_arena_reset(&r->arena);
  cad_hl7_msg_t m;
  cad_hl7_diag_t dg;
  memset(&dg, 0, sizeof dg);
  *now = CAD_DELIVER_FAIL;
  if (cad_hl7_parse(&m, p, len, &r->arena, r->limits, &dg) != 0) {
    snprintf(r->reason, sizeof r->reason, "requeued message does not parse: %s", dg.reason);
    return 1;
  }
  cad_route_result_t res;
  memset(&res, 0, sizeof res);
  int rc = r->cc && r->cc->routes == r->routes ? cad_chan_route(r->cc, p, len, &m, &r->arena, &res)
           : r->routes ? cad_routes_eval(r->routes, p, len, &m, &r->arena, &res)
                       : CAD_E_STATE;
  if (rc == 1) rc = 0; /* refused for its character set: res says why */
  if (rc < 0 && res.disposition == CAD_ROUTE_DELIVER) {
    snprintf(r->reason, sizeof r->reason, "routing failed: %s", cad_err_name(rc));
    return 1;
  }
  if (res.disposition == CAD_ROUTE_FILTERED ||
      (res.disposition == CAD_ROUTE_DELIVER && res.nouts == 0)) {
    *now = CAD_DELIVER_OK;
    return 1;
  }
  if (res.disposition != CAD_ROUTE_DELIVER) {
    snprintf(r->reason, sizeof r->reason, "routes: %s", res.diag.reason);
    return 1;
  }
  cad_queue_item_t *items = cad_arena_alloc(&r->arena, (res.nouts ? res.nouts : 1) * sizeof *items);
  if (!items) {
    *now = CAD_DELIVER_RETRY;
    snprintf(r->reason, sizeof r->reason, "out of memory");
    return 1;
  }
  for (size_t i = 0; i < res.nouts; i++) {
    size_t di = res.outs[i].dest;
    if (di >= r->nqids) {
      snprintf(r->reason, sizeof r->reason, "routes name an unknown destination");
      return 1;
    }
    uint16_t qid = r->lane_fn
                       ? r->lane_fn(r->lane_ud, di, res.outs[i].bytes.p, res.outs[i].bytes.len)
                       : r->qids[di];
    items[i] = (cad_queue_item_t){qid, res.outs[i].bytes.p, res.outs[i].bytes.len};
  }
  rc = cad_queue_append(r->q, items, res.nouts, appended, r);
  if (rc < 0) {
    *now = CAD_DELIVER_RETRY;
    snprintf(r->reason, sizeof r->reason, "queue refused it: %s", cad_err_name(rc));
    return 1;
  }
  return 0;
}

int cad_reroute_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  cad_reroute_t *r = impl;
  r->done = done;
  r->done_ctx = ctx;
  r->reason[0] = 0;
  cad_deliver_outcome_t now;
  if (route(r, p, len, &now) != 0) done(ctx, now, now == CAD_DELIVER_OK ? NULL : r->reason);
  return 0;
}

void cad_reroute_set_channel(cad_reroute_t *r, const cad_conf_channel_t *cc) { r->cc = cc; }
