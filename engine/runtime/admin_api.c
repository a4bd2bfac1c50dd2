/* admin_api.c - engine control through the admin API (admin_int.h):
 * pausing channels and destinations, the queue and its dead letters, and
 * reloading the configuration.  Changes to the journal run on the queue's
 * commit thread (cad_queue_exec), the engine's one writer; the answer is
 * given when they are durable.  Every changing action is audited with its
 * result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "journal.h"
#include "log.h"
#include "queue_dlq.h"
#include "stats.h"

#define DEAD_LIST_MAX 500

static bool chan_known(const char *name) {
  for (const cad_chan_stats_t *s = cad_stats_first(); s; s = s->next)
    if (strcmp(s->name, name) == 0) return true;
  return false;
}

static void chan_set(cad__admin_call_t *c, bool pause) {
  cad_admin_t *a = c->a;
  const char *action = pause ? "channel.pause" : "channel.resume";
  if (!chan_known(c->arg) || strlen(c->arg) > CAD_CONF_NAME_MAX) {
    cad__admin_audit_call(c, action, c->arg, "not_found");
    return cad__admin_error(c->res, 404, "not_found", "no channel of that name");
  }
  cad__admin_paused_t *p = NULL;
  for (size_t i = 0; i < a->npaused_chans; i++)
    if (strcmp(a->paused_chans[i].name, c->arg) == 0) p = &a->paused_chans[i];
  bool was = p != NULL;
  if (pause && !p) {
    if (a->npaused_chans >= CAD_ADMIN_MAX_PAUSED) {
      cad__admin_audit_call(c, action, c->arg, "refused: too many paused");
      return cad__admin_error(c->res, 409, "conflict", "too many channels paused");
    }
    p = &a->paused_chans[a->npaused_chans++];
    memset(p, 0, sizeof *p);
    memcpy(p->name, c->arg, strlen(c->arg) + 1);
  } else if (!pause && p) {
    *p = a->paused_chans[--a->npaused_chans];
  }
  cad__admin_audit_call(c, action, c->arg, was == pause ? "unchanged" : "ok");
  cad__admin_json(
      c->res, 200,
      json_pack("{s:s, s:b, s:b}", "channel", c->arg, "paused", pause, "changed", was != pause));
}

void cad__admin_chan_pause(cad__admin_call_t *c) { chan_set(c, true); }
void cad__admin_chan_resume(cad__admin_call_t *c) { chan_set(c, false); }

/* A destination of the queue by name (404 answered when not). */
static int dest_of(cad__admin_call_t *c, const char *action) {
  if (!*c->a->view.q) {
    cad__admin_error(c->res, 503, "unavailable", "the queue is closed");
    return -1;
  }
  int qid = cad__admin_qid(c->a, c->arg);
  if (qid < 0) {
    if (action) cad__admin_audit_call(c, action, c->arg, "not_found");
    cad__admin_error(c->res, 404, "not_found", "no destination of that name");
  }
  return qid;
}

static void dest_set(cad__admin_call_t *c, bool pause) {
  const char *action = pause ? "destination.pause" : "destination.resume";
  int qid = dest_of(c, action);
  if (qid < 0) return;
  cad_admin_t *a = c->a;
  bool was = a->paused_dests[qid];
  a->paused_dests[qid] = pause;
  if (a->view.ctl && a->view.ctl->dest_pause)
    a->view.ctl->dest_pause(a->view.ctl->ud, (uint16_t)qid, pause);
  cad__admin_audit_call(c, action, c->arg, was == pause ? "unchanged" : "ok");
  cad__admin_json(c->res, 200,
                  json_pack("{s:s, s:b, s:b}", "destination", c->arg, "paused", pause, "changed",
                            was != pause));
}

void cad__admin_dest_pause(cad__admin_call_t *c) { dest_set(c, true); }
void cad__admin_dest_resume(cad__admin_call_t *c) { dest_set(c, false); }

/* ---- on the commit thread ------------------------------------------------ */

/* Reads (cad_queue_read_exec): the view with the journals held, then the
 * scan on the thread pool without them. */
static int snap_view(void *ud, cad_queue_journals_t *js) {
  cad__admin_job_t *j = ud;
  return cad_dlq_view(js, j->target, &j->view);
}

static int scan_queue(void *ud, cad_queue_journals_t *js) {
  cad__admin_job_t *j = ud;
  int rc = cad_dlq_oldest_waiting(js, &j->view, &j->r1);
  cad_dlq_item_t none;
  size_t n;
  if (rc == 0) rc = cad_dlq_list(js, &j->view, 0, 0, &none, &n, &j->total);
  return rc;
}

static int scan_dead(void *ud, cad_queue_journals_t *js) {
  cad__admin_job_t *j = ud;
  return cad_dlq_list(js, &j->view, j->r2, j->nout, j->out, &j->nout, &j->total);
}

static int exec_requeue(void *ud, cad_queue_journals_t *js) {
  cad__admin_job_t *j = ud;
  return cad_dlq_requeue(js, j->target, j->n, &j->r1, &j->r2);
}

static int exec_purge(void *ud, cad_queue_journals_t *js) {
  cad__admin_job_t *j = ud;
  return cad_dlq_purge(js, j->target, j->n, &j->r1);
}

/* ---- answers on the loop ---------------------------------------------------- */

static int status_of(int rc) { return rc == CAD_E_NOTFOUND ? 404 : rc == CAD_E_STATE ? 503 : 500; }

/* What an audit line names: the destination, and the dead letter. */
static const char *audit_target(const cad__admin_job_t *j, char *buf, size_t cap) {
  if (strncmp(j->action, "deadletter.", 11) != 0) return j->target;
  if (j->n) snprintf(buf, cap, "%s#%llu", j->target, (unsigned long long)j->n);
  else snprintf(buf, cap, "%s#all", j->target);
  return buf;
}

static void fail(cad__admin_job_t *j, int rc, bool audited) {
  char t[sizeof j->target + 32];
  if (audited)
    cad__admin_audit(j->a, j->token, j->peer, j->action, audit_target(j, t, sizeof t),
                     rc == CAD_E_NOTFOUND ? "not_found" : cad_err_name(rc));
  json_t *e =
      json_pack("{s:s, s:s}", "error", rc == CAD_E_NOTFOUND ? "not_found" : "failed", "detail",
                rc == CAD_E_NOTFOUND ? "no such destination or dead letter" : cad_strerror(rc));
  cad__admin_job_answer(j, status_of(rc), e);
}

static void queue_done(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs, (void)n;
  cad__admin_job_t *j = ud;
  if (status < 0) return fail(j, status, false);
  cad_queue_t *q = *j->a->view.q;
  const cad_jdest_t *d = q ? cad_queue_dest_info(q, j->qid) : NULL;
  uint64_t depth = d && d->last_seq > d->done_seq ? d->last_seq - d->done_seq : 0;
  uint64_t now = cad_now_ms();
  const cad_delivery_stats_t *ctr = &j->a->view.counters[j->qid];
  json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:b, s:b}", "destination", j->target,
                        "depth", (json_int_t)depth, "last_seq", (json_int_t)(d ? d->last_seq : 0),
                        "done_seq", (json_int_t)(d ? d->done_seq : 0), "delivered",
                        (json_int_t)ctr->delivered, "oldest_waiting_seconds",
                        j->r1 && now > j->r1 ? (double)(now - j->r1) / 1000.0 : 0.0, "dead_letters",
                        (json_int_t)j->total, "paused", j->a->paused_dests[j->qid], "blocked",
                        ctr->blocked != 0);
  cad__admin_job_answer(j, 200, o);
}

static void dead_done(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs, (void)n;
  cad__admin_job_t *j = ud;
  if (status < 0) return fail(j, status, false);
  json_t *arr = json_array();
  const cad_dlq_item_t *it = j->out;
  for (size_t i = 0; arr && i < j->nout; i++) {
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s}", "number", (json_int_t)it[i].no,
                          "time_ms", (json_int_t)it[i].time_ms, "queue_seq",
                          (json_int_t)it[i].orig_seq, "bytes", (json_int_t)it[i].bytes, "reason",
                          it[i].reason, "type", it[i].type, "control_id", it[i].control_id);
    if (!o || json_array_append_new(arr, o) < 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  cad__admin_job_answer(j, 200,
                        json_pack("{s:s, s:I, s:o?}", "destination", j->target, "total",
                                  (json_int_t)j->total, "dead_letters", arr));
}

static void moved_done(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs, (void)n;
  cad__admin_job_t *j = ud;
  bool requeue = strcmp(j->action, "deadletter.requeue") == 0;
  if (status < 0) return fail(j, status, true);
  char result[64];
  snprintf(result, sizeof result, "ok: %llu", (unsigned long long)j->r1);
  char t[sizeof j->target + 32];
  cad__admin_audit(j->a, j->token, j->peer, j->action, audit_target(j, t, sizeof t), result);
  json_t *o = requeue
                  ? json_pack("{s:s, s:I, s:I}", "destination", j->target, "requeued",
                              (json_int_t)j->r1, "first_seq", (json_int_t)j->r2)
                  : json_pack("{s:s, s:I}", "destination", j->target, "purged", (json_int_t)j->r1);
  cad__admin_job_answer(j, 200, o);
}

/* Start job j on the commit thread; on failure it is answered. */
static void run(cad__admin_job_t *j, cad_queue_exec_fn fn, cad_queue_append_cb cb, bool audited) {
  cad_queue_t *q = *j->a->view.q;
  int rc = q ? cad_queue_exec(q, fn, j, cb, j) : CAD_E_STATE;
  if (rc < 0) fail(j, rc, audited);
}

/* Start a read of job j on the thread pool; on failure it is answered. */
static void start_read(cad__admin_job_t *j, cad_queue_exec_fn scan, cad_queue_append_cb cb) {
  cad_queue_t *q = *j->a->view.q;
  int rc = q ? cad_queue_read_exec(q, snap_view, scan, j, cb) : CAD_E_STATE;
  if (rc < 0) fail(j, rc, false);
}

void cad__admin_dest_queue(cad__admin_call_t *c) {
  int qid = dest_of(c, NULL);
  if (qid < 0) return;
  cad__admin_job_t *j = cad__admin_job_new(c, "queue", c->arg);
  if (!j) return;
  j->qid = (uint16_t)qid;
  start_read(j, scan_queue, queue_done);
}

void cad__admin_dest_dead(cad__admin_call_t *c) {
  char v[32];
  uint64_t limit = 100, after = 0;
  int q1 = cad__admin_query(c->req, "limit", v, sizeof v);
  if (q1 < 0 || (q1 == 1 && (cad__admin_u64(v, &limit) < 0 || limit == 0)))
    return cad__admin_error(c->res, 400, "bad_request", "limit: expected a positive number");
  int q2 = cad__admin_query(c->req, "after", v, sizeof v);
  if (q2 < 0 || (q2 == 1 && cad__admin_u64(v, &after) < 0))
    return cad__admin_error(c->res, 400, "bad_request", "after: expected a number");
  if (limit > DEAD_LIST_MAX) limit = DEAD_LIST_MAX;
  int qid = dest_of(c, NULL);
  if (qid < 0) return;
  cad_dlq_item_t *items = calloc((size_t)limit, sizeof *items);
  if (!items) return cad__admin_error(c->res, 500, "internal", "out of memory");
  cad__admin_job_t *j = cad__admin_job_new(c, "deadletters", c->arg);
  if (!j) {
    free(items);
    return;
  }
  j->qid = (uint16_t)qid;
  j->out = items;
  j->nout = (size_t)limit;
  j->r2 = after;
  start_read(j, scan_dead, dead_done);
}

/* The body of requeue and purge: {"number": N} or {"all": true}.  0 and
 * *no (0 = all), or -1 (answered 400). */
static int which_dead(cad__admin_call_t *c, uint64_t *no) {
  json_error_t err;
  json_t *doc = c->req->body && c->req->body_len
                    ? json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &err)
                    : NULL;
  json_int_t n = 0;
  int all = 0;
  int ok = doc && json_is_object(doc) &&
           json_unpack_ex(doc, &err, JSON_STRICT, "{s?I, s?b}", "number", &n, "all", &all) == 0;
  json_decref(doc);
  if (!ok || (all && n) || (!all && n <= 0)) {
    cad__admin_error(c->res, 400, "bad_request",
                     "expected a JSON body {\"number\": N} or {\"all\": true}");
    return -1;
  }
  *no = all ? 0 : (uint64_t)n;
  return 0;
}

static void move_dead(cad__admin_call_t *c, bool purge) {
  const char *action = purge ? "deadletter.purge" : "deadletter.requeue";
  uint64_t no;
  if (which_dead(c, &no) < 0) return;
  int qid = dest_of(c, action);
  if (qid < 0) return;
  cad__admin_job_t *j = cad__admin_job_new(c, action, c->arg);
  if (!j) return;
  j->qid = (uint16_t)qid;
  j->n = no;
  run(j, purge ? exec_purge : exec_requeue, moved_done, true);
}

void cad__admin_dest_requeue(cad__admin_call_t *c) { move_dead(c, false); }
void cad__admin_dest_purge(cad__admin_call_t *c) { move_dead(c, true); }

/* ---- reload -------------------------------------------------------------- */

static void reload_done(void *arg, int status, const char *errors) {
  cad__admin_job_t *j = arg;
  cad__admin_audit(j->a, j->token, j->peer, "reload", "configuration",
                   status == 0 ? "ok" : "refused");
  if (status == 0) return cad__admin_job_answer(j, 200, json_pack("{s:b}", "reloaded", 1));
  cad__admin_job_answer(j, 422,
                        json_pack("{s:s, s:s}", "error", "reload_refused", "detail",
                                  errors && *errors ? errors : cad_strerror(status)));
}

void cad__admin_reload(cad__admin_call_t *c) {
  const cad_admin_ctl_t *ctl = c->a->view.ctl;
  if (!ctl || !ctl->reload) {
    cad__admin_audit_call(c, "reload", "configuration", "unavailable");
    return cad__admin_error(c->res, 503, "unavailable", "this engine cannot reload");
  }
  cad__admin_job_t *j = cad__admin_job_new(c, "reload", "configuration");
  if (!j) return;
  int rc = ctl->reload(ctl->ud, reload_done, j);
  if (rc < 0) {
    cad__admin_audit(j->a, j->token, j->peer, "reload", "configuration", "refused");
    cad__admin_job_answer(
        j, rc == CAD_E_STATE ? 409 : 500,
        json_pack("{s:s, s:s}", "error", "reload_refused", "detail",
                  rc == CAD_E_STATE ? "a reload is already reading its files" : cad_strerror(rc)));
  }
}
