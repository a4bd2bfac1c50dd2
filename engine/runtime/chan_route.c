/* chan_route.c - a channel's routes with its character sets (chan_route.h). */
#include "chan_route.h"

#include <stdio.h>
#include <string.h>

#include "cad_error.h"
#include "hl7_charset.h"

/* The refusal of a message, as the routes report theirs. */
static void refuse(cad_route_result_t *res, cad_route_disposition_t d, const cad_hl7_diag_t *dg,
                   int route) {
  res->disposition = d;
  res->nouts = 0;
  res->route = route;
  res->step = 0;
  res->diag = *dg;
}

int cad_chan_route(const cad_conf_channel_t *cc, const char *bytes, size_t len,
                   const cad_hl7_msg_t *parsed, cad_arena_t *a, cad_route_result_t *res) {
  memset(res, 0, sizeof *res);
  res->route = -1;
  if (!cc->routes) return CAD_E_STATE;
  cad_hl7_msg_t own;
  if (!parsed) {
    /* Unparseable: the routes report it as they always have. */
    if (cad_hl7_parse(&own, bytes, len, a, NULL, NULL) != 0)
      return cad_routes_eval(cc->routes, bytes, len, NULL, a, res);
    parsed = &own;
  }
  cad_str_t text;
  int src = CAD_CS_NONE;
  cad_hl7_diag_t dg = {0};
  int rc = cad_charset_msg_in(parsed, cc->charset, a, &text, &src, &dg);
  if (rc == CAD_E_NOMEM) return rc;
  if (rc < 0) {
    refuse(res, CAD_ROUTE_REJECTED, &dg, -1);
    return 1;
  }
  const cad_hl7_msg_t *m = parsed;
  cad_hl7_msg_t conv;
  if (text.p != bytes) {
    /* The same structure in UTF-8: every delimiter is ASCII, so this parse
     * succeeds where the first did; only the limits scale with the size. */
    cad_hl7_limits_t lim = {.max_bytes = text.len + 1};
    cad_hl7_diag_t pd;
    if ((rc = cad_hl7_parse(&conv, text.p, text.len, a, &lim, &pd)) != 0) return rc;
    m = &conv;
  }
  rc = cad_routes_eval(cc->routes, text.p, text.len, m, a, res);
  if (rc < 0 || res->disposition != CAD_ROUTE_DELIVER) return rc;
  for (size_t i = 0; i < res->nouts; i++) {
    cad_route_out_t *o = &res->outs[i];
    const cad_conf_dest_t *d = o->dest < cc->ndests ? &cc->dests[o->dest] : NULL;
    int want = d ? d->encoding : CAD_CS_NONE;
    if (src == CAD_CS_NONE && want == CAD_CS_NONE) continue;
    cad_str_t out;
    rc = cad_charset_msg_out(o->bytes, src, want, d ? (cad_cs_policy_t)d->unrepresentable : 0, a,
                             &out, &dg);
    if (rc == CAD_E_NOMEM) return rc;
    if (rc < 0) {
      char why[sizeof dg.reason];
      snprintf(why, sizeof why, "%s", dg.reason);
      int n = snprintf(dg.reason, sizeof dg.reason, "destination '%.24s': ", d ? d->name : "?");
      if (n > 0 && (size_t)n < sizeof dg.reason)
        memcpy(dg.reason + n, why, strnlen(why, sizeof dg.reason - (size_t)n - 1) + 1);
      dg.reason[sizeof dg.reason - 1] = 0;
      refuse(res, cad_routes_dead_letters(cc->routes) ? CAD_ROUTE_DEAD_LETTER : CAD_ROUTE_ERROR,
             &dg, (int)o->route);
      return 0;
    }
    o->bytes = out;
  }
  return 0;
}
