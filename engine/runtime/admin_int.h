/* admin_int.h - what the admin API's files share (admin.c: routing, tokens;
 * admin_api.c: engine control; admin_archive.c: the archive; admin_audit.c:
 * the audit trail).  Loop thread only. */
#ifndef CAD_ADMIN_INT_H
#define CAD_ADMIN_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "admin.h"
#include "queue_dlq.h"

#define CAD_ADMIN_MAX_PAUSED 256 /* channels paused at once */
#define CAD_ADMIN_ARG_MAX 256    /* a decoded path segment */
#define CAD_ADMIN_RATES_MAX 2048 /* names whose per-minute counts are kept */

typedef struct cad__admin_rates cad__admin_rates_t;

typedef struct cad__admin_peer {
  char addr[48];
  uint64_t window_start_ms;
  uint32_t fails;
} cad__admin_peer_t;

typedef struct cad__admin_token {
  char name[CAD_CONF_NAME_MAX + 1];
  cad_role_t role;
  unsigned char sha256[32];
} cad__admin_token_t;

typedef struct cad__admin_paused {
  char name[CAD_CONF_NAME_MAX + 1];
  uint64_t refused; /* frames refused while paused */
} cad__admin_paused_t;

struct cad_admin {
  cad_admin_view_t view;
  char host[64];
  int port;
  bool open_metrics;
  uint64_t ready_max_age_ms; /* admin.ready_max_age, 0 = none */
  cad__admin_token_t *tokens;
  size_t ntokens;
  cad__admin_peer_t peers[CAD_ADMIN_MAX_PEERS];
  size_t next_peer; /* the slot replaced when the table is full */
  uint64_t start_ms;
  uint64_t failed_seen, batches_at_failure; /* journal writability (readyz) */
  cad_http_server_t *http;
  uv_loop_t *loop;    /* set by cad_admin_listen (NULL: no thread-pool work) */
  cad_tls_ctx_t *tls; /* `tls:`, or NULL */
  /* operator state */
  cad__admin_paused_t paused_chans[CAD_ADMIN_MAX_PAUSED];
  size_t npaused_chans;
  bool paused_dests[CAD_JOURNAL_MAX_DESTS];
  int audit_fd; /* data_dir/audit.jsonl, -1 = not open (yet) */
  int jobs;     /* answers still to come (deferred) and the rates timer; the admin lives until 0 */
  cad__admin_rates_t *rates; /* per-minute counts (admin_rates.c), NULL until listening */
  bool closed;               /* cad_admin_close ran and the server is gone */
};

/* One request being answered. */
typedef struct cad__admin_call {
  cad_admin_t *a;
  const cad_http_req_t *req;
  cad_http_res_t *res;
  const cad__admin_token_t *tok; /* NULL when served without a token */
  char arg[CAD_ADMIN_ARG_MAX];   /* the route's '*' segment, decoded */
} cad__admin_call_t;

/* A deferred answer: who asked, for the audit line written with the result. */
typedef struct cad__admin_job {
  cad_admin_t *a;
  cad_http_later_t *later;
  char token[CAD_CONF_NAME_MAX + 1];
  char peer[48];
  char action[32];
  char target[CAD_ADMIN_ARG_MAX + 32];
  uint64_t n;         /* a number the action needs (dead letter, message id) */
  uint16_t qid;       /* a destination */
  char *audit_target; /* what the audit line names, when not `target` (owned) */
  void *out;          /* the action's own results (owned) */
  size_t nout;
  uint64_t total;      /* dead letters counted */
  uint64_t r1, r2;     /* results */
  cad_dlq_view_t view; /* reads: what was taken of the journals */
} cad__admin_job_t;

void cad__admin_json(cad_http_res_t *res, int status, json_t *doc);
void cad__admin_error(cad_http_res_t *res, int status, const char *error, const char *detail);
/* Send a deferred answer and free the job (the admin may be freed then). */
void cad__admin_job_answer(cad__admin_job_t *j, int status, json_t *doc);
/* A new job for c (NULL: answered 500 already). */
cad__admin_job_t *cad__admin_job_new(cad__admin_call_t *c, const char *action, const char *target);

/* One of a->jobs ended: the admin is freed when it was the last after close. */
void cad__admin_job_done(cad_admin_t *a);

/* The exposition with what the admin API itself knows (paused channels and
 * destinations) besides cad_admin_metrics's (admin_metrics.c). */
int cad__admin_metrics_all(const cad_admin_t *a, char **out, size_t *len);

/* The per-minute counts (admin_rates.c): started with the listener,
 * stopped at close. */
int cad__admin_rates_start(cad_admin_t *a, uv_loop_t *loop);
void cad__admin_rates_stop(cad_admin_t *a);
void cad__admin_rates_get(cad__admin_call_t *c);

/* Query parameter `key` of the request, percent-decoded into out (cap
 * bytes, NUL-terminated): 1 found, 0 absent, -1 malformed or too long
 * (NUL bytes and bad escapes are malformed). */
int cad__admin_query(const cad_http_req_t *req, const char *key, char *out, size_t cap);
/* The same for the nth (from 0) occurrence of a repeated key. */
int cad__admin_query_nth(const cad_http_req_t *req, const char *key, unsigned nth, char *out,
                         size_t cap);
/* A decimal number: 0 and *out, or -1. */
int cad__admin_u64(const char *s, uint64_t *out);

/* The audit trail: one JSON line per changing action or body view (token,
 * peer, action, target, result), appended to data_dir/audit.jsonl (0600)
 * and logged.  No message contents. */
void cad__admin_audit(cad_admin_t *a, const char *token, const char *peer, const char *action,
                      const char *target, const char *result);
void cad__admin_audit_call(cad__admin_call_t *c, const char *action, const char *target,
                           const char *result);
void cad__admin_audit_close(cad_admin_t *a);

/* Route handlers (admin_api.c, admin_archive.c, admin_audit.c). */
void cad__admin_chan_pause(cad__admin_call_t *c);
void cad__admin_chan_resume(cad__admin_call_t *c);
void cad__admin_dest_pause(cad__admin_call_t *c);
void cad__admin_dest_resume(cad__admin_call_t *c);
void cad__admin_dest_queue(cad__admin_call_t *c);
void cad__admin_dest_dead(cad__admin_call_t *c);
void cad__admin_dest_requeue(cad__admin_call_t *c);
void cad__admin_dest_purge(cad__admin_call_t *c);
void cad__admin_reload(cad__admin_call_t *c);
void cad__admin_archive_search(cad__admin_call_t *c);
void cad__admin_archive_show(cad__admin_call_t *c);
void cad__admin_archive_resend(cad__admin_call_t *c);
void cad__admin_audit_get(cad__admin_call_t *c);

/* The console's static files (admin_console.c): true when req asked for
 * one (answered in res), false otherwise. */
bool cad_admin_console(cad_admin_t *a, const cad_http_req_t *req, cad_http_res_t *res);

/* The queue id of a destination name registered in the queue, or -1. */
int cad__admin_qid(cad_admin_t *a, const char *name);

#endif
