/* admin.h - the admin HTTP API: metrics, health, engine control, the archive,
 * the audit trail and the web console; tokens and roles.
 *
 * Served by channels/http (libh2o on the engine's loop) at the `admin:`
 * address of the configuration (config.h, cad_conf_admin_t):
 *   GET /metrics, /healthz, /readyz            (open with open_metrics)
 *   GET /api/v1/channels, /destinations, /rates, /tokens, /audit
 *   POST /api/v1/channels/NAME/pause|resume, /destinations/NAME/pause|resume
 *   GET /api/v1/destinations/NAME/queue, /deadletters
 *   POST /api/v1/destinations/NAME/deadletters/requeue|purge, /api/v1/reload
 *   GET /api/v1/messages?..., /messages/ID; POST /messages/ID/resend
 *   GET /, /console/FILE                         (the console's static files)
 * docs/admin.md has each with its role and answer.  Everything but the open
 * paths needs `Authorization: Bearer TOKEN` of a configured token with a
 * role high enough (401 without a valid one, 403 for a weak one).  Failed
 * attempts are counted per client address: after CAD_ADMIN_MAX_FAILS in
 * CAD_ADMIN_FAIL_WINDOW_MS the address gets 429 until the window ends.
 * Every answer is JSON (or the exposition, or a console file).
 *
 * Files: admin.c (routing, tokens, deferred answers), admin_api.c (engine
 * control, dead letters), admin_archive.c (search, show, resend),
 * admin_audit.c (the audit trail), admin_rates.c (per-minute counts),
 * admin_console.c (the embedded console), admin_metrics.c, admin_token.c;
 * what they share is admin_int.h.
 *
 * The counters are read where they are kept: per channel the stats
 * registry (stats.h), per destination the queue (cad_queue_dest_info) and
 * the delivery counters the engine keeps by queue id, the archive's own
 * (cad_archive_get_stats); nothing counts twice.  Journal work runs on the
 * queue's commit thread (changes) or the thread pool (reads), archive reads
 * on the thread pool: the loop only routes and answers.
 *
 * Memory: cad_admin_t copies what it needs of the configuration; the view's
 * pointers are borrowed and must outlive it.  It lives until its listener
 * is closed and every deferred answer is given.  Loop thread only.
 */
#ifndef CAD_ADMIN_H
#define CAD_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "archive.h"
#include "config.h"
#include "delivery.h"
#include "http_server.h"
#include "queue.h"

#define CAD_ADMIN_MAX_FAILS 10
#define CAD_ADMIN_FAIL_WINDOW_MS 60000u
#define CAD_ADMIN_MAX_PEERS 256 /* addresses tracked for failures (oldest replaced) */

/* What the admin API may ask of the running engine (run.c fills it; all
 * calls on the loop thread). */
typedef struct cad_admin_ctl {
  void *ud;
  /* Hold (or release) the running delivery worker of queue id `qid`; a
   * no-op when none runs (cad_admin_dest_paused() is asked again when one
   * starts). */
  void (*dest_pause)(void *ud, uint16_t qid, bool paused);
  /* Start a reload of the configuration file: 0, and later, exactly once
   * on the loop, done(arg, status, errors) with status 0 (applied) or
   * negative (refused; `errors` the loader's text or a reason, valid for
   * the call); or a negative error (done is not called). */
  int (*reload)(void *ud, void (*done)(void *arg, int status, const char *errors), void *arg);
  const char *data_dir; /* the engine's: the audit trail and the archive are under it */
} cad_admin_ctl_t;

/* What the admin API reads of the running engine (borrowed). */
typedef struct cad_admin_view {
  cad_queue_t *const *q;                /* the queue; *q NULL once closed */
  const cad_delivery_stats_t *counters; /* CAD_JOURNAL_MAX_DESTS, by queue id */
  const bool *stopping;                 /* shutting down: not ready */
  cad_archive_t *const *archive;        /* the message archive; NULL / *NULL = none */
  const cad_admin_ctl_t *ctl;           /* engine control; NULL = read-only API */
} cad_admin_view_t;

typedef struct cad_admin cad_admin_t;

/* A new admin API (not listening yet).  0, or CAD_E_NOMEM. */
int cad_admin_new(const cad_conf_admin_t *conf, const cad_admin_view_t *view, cad_admin_t **out);
/* Listen at the configured address.  0 or a negative (libuv) error. */
int cad_admin_listen(cad_admin_t *a, uv_loop_t *loop);

/* At a reload: take conf's tokens and open_metrics at once (a removed token
 * stops working).  Returns 0, 1 when the listener itself (address, TLS, on
 * or off) changed, which applies only at the next start, or CAD_E_NOMEM
 * (the old tokens stay). */
int cad_admin_reload(cad_admin_t *a, const cad_conf_admin_t *conf);
/* Both, when conf->enabled (else 0 and *out NULL).  On a listen error *out
 * is set all the same (close it). */
int cad_admin_start(uv_loop_t *loop, const cad_conf_admin_t *conf, const cad_admin_view_t *view,
                    cad_admin_t **out);
/* The port listened on (-1 when not listening). */
int cad_admin_port(const cad_admin_t *a);
/* Answer one request (the HTTP server's handler; the fuzz target's entry).
 * res->body is malloc'd (the caller frees it). */
void cad_admin_handle(void *admin, const cad_http_req_t *req, cad_http_res_t *res);
/* Whether an operator paused channel `name` (its frames are then refused:
 * the connection is closed without an ACK, so the sender resends later)
 * or the delivery of queue id `qid`.  NULL admin: never. */
bool cad_admin_channel_paused(const cad_admin_t *a, const char *name);
bool cad_admin_dest_paused(const cad_admin_t *a, uint16_t qid);
/* Count a frame refused because its channel is paused. */
void cad_admin_channel_refused(cad_admin_t *a, const char *name);

/* Stop listening and free (after open connections closed). NULL ignored. */
void cad_admin_close(cad_admin_t *a);

/* Render the Prometheus exposition into *out (malloc'd, *len bytes).
 * 0 or CAD_E_NOMEM.  (admin_metrics.c) */
int cad_admin_metrics(const cad_admin_view_t *view, uint64_t start_ms, char **out, size_t *len);

/* A new random token (43 URL-safe characters, NUL-terminated, into tok of
 * at least CAD_ADMIN_TOKEN_LEN + 1) and its "sha256:<hex>" form (into hash,
 * at least CAD_ADMIN_HASH_LEN + 1).  0 or CAD_E_IO.  (admin_token.c) */
#define CAD_ADMIN_TOKEN_LEN 43
#define CAD_ADMIN_HASH_LEN (7 + 64)
int cad_admin_token_new(char *tok, char *hash);
/* SHA-256 of a token. 0 or CAD_E_NOMEM. */
int cad_admin_token_hash(const char *tok, size_t len, unsigned char out[32]);

#endif
