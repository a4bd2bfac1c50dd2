/* run.c - `caduceus run CONFIG`: the engine process.
 *
 * Wiring: one cad_mllp_listener per configured address; every frame is
 * parsed, routed (routes/: filters and transforms give the bytes for each
 * destination), appended to the durable queue (engine/store/queue.h) and ACKed
 * according to the channel's ack.policy: `persisted` (default) once every
 * record is on disk, `received` at once, `delivered` once the destinations
 * took it.  One delivery worker per destination (engine/store/delivery.h) reads its
 * FIFO from the queue and hands messages, in order, to the destination's
 * driver (a file writer or an MLLP sender).  The message path itself (parse,
 * route, queue, ACK, counters, log line) is pipeline.c, with an explicit
 * context; this file wires it to the listeners, the queue and the workers.
 *
 * The data directory itself is locked (engine/store/lock.h) while the engine
 * runs, so two engines never share a queue and `caduceus queue
 * requeue|purge` refuse to change it underneath.
 *
 * Configuration lifecycle: a runtime (rt_t) holds one loaded configuration,
 * its open destinations and its channels.  Each message in flight holds a
 * reference on the runtime it started with, so a reload never pulls a
 * destination from under a write.  SIGHUP builds a new runtime beside the
 * old one; only when it is complete (config valid, destinations open, new
 * listeners bound) does it replace the old one.  Listeners whose host:port is
 * unchanged are kept with their connections and rebound to the new channel.
 *
 * Signals: SIGTERM/SIGINT stop accepting, let in-flight messages finish and
 * their ACKs be written (bounded by a drain time), close everything and exit
 * 0 after uv_loop_close() succeeds.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <fcntl.h>
#include <sys/file.h>

#include "ack.h"
#include "admin.h"
#include "cad_error.h"
#include "cad_io.h"
#include "cli.h"
#include "config.h"
#include "delivery.h"
#include "dest_kind.h"
#include "lanes.h"
#include "hl7.h"
#include "lock.h"
#include "log.h"
#include "mllp_listener.h"
#include "pipeline.h"
#include "queue.h"
#include "reroute.h"
#include "routes.h"
#include "source.h"
#include "stats.h"

#define DRAIN_MS 10000

/* ---- runtime ------------------------------------------------------------ */

typedef struct rt rt_t;

typedef struct chan {
  rt_t *rt;
  const cad_conf_channel_t *cc;
  cad_chan_stats_t *st;
  cad_pipe_chan_t pc; /* the message path's view (pipeline.h); owner = rt */
  cad_tls_ctx_t *tls; /* `tls:` server context (read at start / reload), or NULL */
} chan_t;

/* A destination of one runtime: its driver and, while it runs, its worker. */
typedef struct dest {
  rt_t *rt;
  const cad_conf_dest_t *cd;
  uint16_t qid;      /* its FIFO in the queue */
  cad_dest_t *dest;  /* its kind and payload steps (dest_kind.h); NULL for a rerouter */
  cad_delivery_t *w; /* the running worker, or NULL */
  /* A channel's requeued dead letters ("channel:NAME"), routed again: */
  cad_reroute_t *rr;
  cad_conf_dest_t rr_cd; /* its settings (name in rr_name) */
  char rr_name[80];
  /* Lanes (lanes.h): lane 0 is this dest_t; lanes 1.. are lane_dests[0..],
   * each with its own queue id, kind instance (cad_dest_open once per
   * lane) and worker.  nrun may pass the configured lanes while an old
   * configuration's extra lanes drain (new messages only go to lanes below
   * cd->lanes). */
  struct dest *lane_dests; /* owned, nrun - 1 entries */
  unsigned nrun;           /* lanes with a worker, >= 1 */
  cad_lanekey_t *key;      /* order_by, owned (lane 0 only), NULL = one lane */
  cad_arena_t key_arena;   /* parse for the key (lane 0 only) */
} dest_t;

struct rt {
  cad_config_t *cfg;
  dest_t *dests; /* one per cfg->dests, then one rerouter per channel */
  size_t ndests; /* cfg->ndests + cfg->nchannels */
  chan_t *chans; /* one per cfg->channels */
  int refs;
  int workers; /* delivery workers running */
};

typedef struct lsn {
  struct lsn *next;
  char host[64];
  int port;
  cad_mllp_listener_t *l;
  chan_t *ch; /* the channel it feeds now */
  bool keep;  /* reload bookkeeping */
} lsn_t;

typedef struct engine {
  uv_loop_t *loop;
  const char *config_path;
  char *data_dir; /* the queue's, fixed for the life of the process */
  int lockfd;     /* data_dir/lock, held */
  cad_queue_t *q;
  bool q_closing;
  dest_t *by_qid[CAD_JOURNAL_MAX_DESTS]; /* running workers by queue id */
  /* Their counters by queue id (a name's id is fixed for the process), so
   * a reload does not reset them. */
  cad_delivery_stats_t dest_counters[CAD_JOURNAL_MAX_DESTS];
  rt_t *rt_next;       /* a reloaded runtime waiting for the old workers to stop */
  int running_workers; /* delivery workers of any runtime not yet stopped */
  rt_t *rt;
  cad_pipe_t pipe; /* the message path, wired to the queue and listeners below */
  lsn_t *lsns;
  cad_sources_t *sources; /* sources other than MLLP listeners (source.h) */
  int nclosing;           /* listeners and sources still draining */
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t stats_timer;
  uv_prepare_t log_prep; /* writes the loop's batched log lines before it waits */
  cad_admin_t *admin; /* the admin API (`admin:`, fixed for the process), or NULL */
  cad_admin_view_t admin_view;
  cad_admin_ctl_t admin_ctl; /* what the admin API may ask (admin_ctl_* below) */
  /* A reload asked through the admin API: told how it ended. */
  void (*reload_done)(void *arg, int status, const char *errors);
  void *reload_arg;
  bool stopping;
  int exit_status;
} engine_t;

static engine_t E;

static void start_workers(rt_t *rt);

static void dest_free(dest_t *d) {
  cad_reroute_free(d->rr);
  cad_dest_close(d->dest);
  if (d->lane_dests)
    for (unsigned k = 0; k + 1 < d->nrun; k++) dest_free(&d->lane_dests[k]);
  free(d->lane_dests);
  cad_lanekey_free(d->key);
  cad_arena_free(&d->key_arena);
}

/* Lane k of destination d (0 = d itself). */
static dest_t *lane_of(dest_t *d, unsigned k) { return k == 0 ? d : &d->lane_dests[k - 1]; }

static void rt_release(rt_t *rt) {
  if (!rt || --rt->refs > 0) return;
  if (rt->dests)
    for (size_t i = 0; i < rt->ndests; i++) dest_free(&rt->dests[i]);
  free(rt->dests);
  if (rt->chans)
    for (size_t i = 0; i < rt->cfg->nchannels; i++) cad_tls_ctx_unref(rt->chans[i].tls);
  free(rt->chans);
  cad_config_free(rt->cfg);
  free(rt);
}

static cad_mllp_listener_opts_t listener_opts(const cad_conf_channel_t *cc,
                                              const cad_conf_listen_t *ln) {
  cad_mllp_listener_opts_t o = cc->listener; /* the channel's, as loaded */
  o.host = ln->host;
  o.port = ln->port;
  o.fd_reserve = CAD_MLLP_FD_RESERVE;
  return o;
}

/* ---- destinations: drivers and delivery workers --------------------------- */

/* Open one lane of a destination: queue `qname` and its own kind instance. */
static int dest_open_lane(rt_t *rt, dest_t *d, const cad_conf_dest_t *cd, const char *qname) {
  d->rt = rt;
  d->cd = cd;
  d->nrun = 1;
  int qid = cad_queue_dest(E.q, qname);
  char err[256] = "";
  int rc = qid;
  if (qid >= 0) {
    d->qid = (uint16_t)qid;
    cad_queue_set_backlog(E.q, d->qid, cd->max_backlog);
    /* The config holds each channel kind's own options: passed as they are. */
    rc = cad_dest_open(E.loop, cd, &d->dest, err, sizeof err);
  } else {
    snprintf(err, sizeof err, "cannot register it in the queue: %s", cad_strerror(qid));
  }
  if (rc < 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.error = cad_err_name(rc);
    CAD_LOG(CAD_LOG_ERROR, "dest.open_failed", &c, "destination %s: %s", qname, err);
  }
  return rc < 0 ? rc : 0;
}

/* Lanes a destination runs: its configured ones, and beyond them any lane
 * an earlier configuration left with messages to deliver (drained, given
 * no new ones). */
static unsigned lanes_to_run(const cad_conf_dest_t *cd) {
  unsigned n = cd->lanes > 1 ? cd->lanes : 1;
  for (uint16_t id = 0; id < CAD_JOURNAL_MAX_DESTS; id++) {
    const cad_jdest_t *jd = cad_queue_dest_info(E.q, id);
    if (!jd) continue;
    int k = cad_lanes_of(jd->name, cd->name);
    if (k >= (int)n && jd->last_seq > jd->done_seq) n = (unsigned)k + 1;
  }
  return n;
}

/* Open destination i of rt: its queue ids and kind instances, one per lane
 * (nothing runs yet). */
static int dest_open(rt_t *rt, size_t i) {
  const cad_conf_dest_t *cd = &rt->cfg->dests[i];
  dest_t *d = &rt->dests[i];
  int rc = dest_open_lane(rt, d, cd, cd->name);
  if (rc < 0) return rc;
  unsigned n = lanes_to_run(cd);
  if (cd->lanes > 1 && cd->order_by) {
    char err[160];
    rc = cad_lanekey_compile(cd->order_by, &d->key, err, sizeof err, NULL);
    if (rc < 0) return rc; /* checked at load: only out of memory */
    cad_arena_init(&d->key_arena, 16384, 0);
  }
  if (n > 1) {
    d->lane_dests = calloc(n - 1, sizeof *d->lane_dests);
    if (!d->lane_dests) return CAD_E_NOMEM;
    for (unsigned k = 1; k < n; k++) {
      char qname[CAD_CONF_NAME_MAX + 8];
      cad_lanes_qname(qname, sizeof qname, cd->name, k);
      d->nrun = k + 1; /* what dest_free frees */
      rc = dest_open_lane(rt, &d->lane_dests[k - 1], cd, qname);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

/* The queue id a message for destination index `di` of runtime rt goes to:
 * its lane's (lanes.h), computed from the bytes the destination will get. */
static uint16_t lane_qid(rt_t *rt, size_t di, const char *p, size_t len) {
  dest_t *d = &rt->dests[di];
  if (!d->key) return d->qid;
  cad_arena_reset(&d->key_arena);
  return lane_of(d, cad_lanekey_lane(d->key, p, len, d->cd->lanes, &d->key_arena))->qid;
}

static void maybe_finish(void);

static void worker_stopped(void *arg) {
  dest_t *d = arg;
  rt_t *rt = d->rt;
  d->w = NULL;
  if (E.by_qid[d->qid] == d) E.by_qid[d->qid] = NULL;
  rt->workers--;
  E.running_workers--;
  if (E.running_workers == 0 && E.rt_next) {
    rt_t *next = E.rt_next;
    E.rt_next = NULL;
    start_workers(next);
    rt_release(next); /* the reference taken while it waited */
  }
  rt_release(rt);
  maybe_finish();
}

static void start_worker(rt_t *rt, dest_t *d, unsigned lane);

static void start_workers(rt_t *rt) {
  if (E.stopping) return;
  for (size_t i = 0; i < rt->ndests; i++)
    for (unsigned k = 0; k < rt->dests[i].nrun; k++) start_worker(rt, lane_of(&rt->dests[i], k), k);
}

/* The worker of lane `lane` of a destination (d is that lane's dest_t). */
static void start_worker(rt_t *rt, dest_t *d, unsigned lane) {
  {
    const cad_conf_dest_t *cd = d->cd;
    char qname[CAD_CONF_NAME_MAX + 8];
    cad_lanes_qname(qname, sizeof qname, cd->name, lane);
    cad_dest_driver_t drv =
        d->rr ? (cad_dest_driver_t){cad_reroute_deliver, d->rr, 1} : cad_dest_driver(d->dest);
    cad_delivery_opts_t o = {cd->retry_initial_ms, cd->retry_max_ms, cd->retry_attempts,
                             cd->on_failure == CAD_ON_FAILURE_DEAD_LETTER,
                             &E.dest_counters[d->qid]};
    int rc = cad_delivery_start(E.loop, E.q, d->qid, qname, &drv, &o, &d->w);
    if (rc < 0) {
      cad_log_ctx_t c = CAD_LOG_CTX_INIT;
      c.error = cad_err_name(rc);
      CAD_LOG(CAD_LOG_ERROR, "dest.start_failed", &c, "destination %s: %s", qname,
              cad_strerror(rc));
      return;
    }
    cad_delivery_set_archive(d->w, E.pipe.archive);
    if (cad_admin_dest_paused(E.admin, d->qid)) cad_delivery_pause(d->w, true);
    rt->refs++;
    rt->workers++;
    E.running_workers++;
    E.by_qid[d->qid] = d;
  }
}

static void stop_workers(rt_t *rt) {
  for (size_t i = 0; i < rt->ndests; i++)
    for (unsigned k = 0; k < rt->dests[i].nrun; k++) {
      dest_t *d = lane_of(&rt->dests[i], k);
      if (d->w) cad_delivery_stop(d->w, worker_stopped, d);
    }
}

static void on_commit(void *ud, uint16_t qid) {
  (void)ud;
  dest_t *d = E.by_qid[qid];
  if (d && d->w) cad_delivery_notify(d->w);
}

/* A channel's TLS context and address list.  The certificate files are read
 * here, at start and at every reload: SIGHUP picks up renewed certificates
 * (new connections get them), and a reload whose files cannot be used is
 * refused, the running configuration staying. */
static int chan_tls(chan_t *ch) {
  const cad_conf_channel_t *cc = ch->cc;
  if (!cc->tls.enabled) return 0;
  char err[300] = "";
  int rc = cad_tls_server_ctx_new(&cc->tls.opts, &ch->tls, err, sizeof err);
  if (rc < 0) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.channel = cc->name;
    c.error = cad_err_name(rc);
    CAD_LOG(CAD_LOG_ERROR, "tls.config_failed", &c, "%s", err);
  }
  return rc;
}

static void listener_tls(cad_mllp_listener_opts_t *o, const chan_t *ch) {
  o->tls = ch->tls; /* allow is the channel's already (the listener copies it) */
}

static uint16_t reroute_lane(void *ud, size_t i, const char *p, size_t len) {
  return lane_qid(ud, i, p, len);
}

/* The channel's dead letters' queue destination, registered at start, with
 * the worker that routes requeued ones again (reroute.h): on_failure
 * dead_letter, so a message that still fails goes back to the dead letters. */
static int rerouter_open(rt_t *rt, chan_t *ch, dest_t *d) {
  d->rt = rt;
  d->cd = &d->rr_cd;
  snprintf(d->rr_name, sizeof d->rr_name, "channel:%s", ch->cc->name);
  d->rr_cd.name = d->rr_name;
  d->rr_cd.retry_initial_ms = 1000;
  d->rr_cd.retry_max_ms = 60000;
  d->rr_cd.retry_attempts = 10;
  d->rr_cd.on_failure = CAD_ON_FAILURE_DEAD_LETTER;
  d->nrun = 1;
  int qid = cad_queue_dest(E.q, d->rr_name);
  if (qid < 0) return qid;
  d->qid = (uint16_t)qid;
  ch->pc.dlq_qid = qid;
  size_t n = rt->cfg->ndests;
  uint16_t *qids = calloc(n ? n : 1, sizeof *qids);
  if (!qids) return CAD_E_NOMEM;
  for (size_t i = 0; i < n; i++) qids[i] = rt->dests[i].qid;
  int rc = cad_reroute_new(E.q, ch->cc->routes, &ch->pc.limits, qids, n, &d->rr);
  if (rc == 0) cad_reroute_set_channel(d->rr, ch->cc);
  free(qids);
  if (rc == 0) cad_reroute_set_lanes(d->rr, reroute_lane, rt);
  return rc;
}

/* Build a runtime from a loaded config (which it takes over). */
static int rt_create(cad_config_t *cfg, rt_t **out) {
  rt_t *rt = calloc(1, sizeof *rt);
  if (!rt) {
    cad_config_free(cfg);
    return CAD_E_NOMEM;
  }
  rt->cfg = cfg;
  rt->refs = 1;
  rt->ndests = cfg->ndests + cfg->nchannels;
  rt->dests = calloc(rt->ndests ? rt->ndests : 1, sizeof *rt->dests);
  rt->chans = calloc(cfg->nchannels ? cfg->nchannels : 1, sizeof *rt->chans);
  if (!rt->dests || !rt->chans) {
    rt_release(rt);
    return CAD_E_NOMEM;
  }
  for (size_t i = 0; i < cfg->ndests; i++) {
    int rc = dest_open(rt, i);
    if (rc < 0) {
      rt_release(rt);
      return rc;
    }
  }
  for (size_t i = 0; i < cfg->nchannels; i++) {
    chan_t *ch = &rt->chans[i];
    ch->rt = rt;
    ch->cc = &cfg->channels[i];
    ch->st = cad_stats_get(ch->cc->name);
    if (!ch->st) {
      rt_release(rt);
      return CAD_E_NOMEM;
    }
    cad_pipe_chan_init(&ch->pc, ch->cc, ch->st, rt);
    int trc = chan_tls(ch);
    if (trc < 0) {
      rt_release(rt);
      return trc;
    }
    trc = rerouter_open(rt, ch, &rt->dests[cfg->ndests + i]);
    if (trc < 0) {
      rt_release(rt);
      return trc;
    }
  }
  *out = rt;
  return 0;
}

/* ---- one message: the pipeline (pipeline.h), wired here ------------------- */

static int io_append(void *ud, const cad_queue_item_t *items, size_t n, cad_queue_append_cb cb,
                     void *cb_ud) {
  (void)ud;
  return cad_queue_append(E.q, items, n, cb, cb_ud);
}

static int io_dead_letter(void *ud, uint16_t qid, const char *reason, const char *p, size_t len,
                          cad_queue_append_cb cb, void *cb_ud) {
  (void)ud;
  return cad_queue_mark(E.q, qid, CAD_JREC_DEAD, 0, reason, p, len, cb, cb_ud);
}

static int io_dest(void *ud, const char *name) {
  (void)ud;
  return cad_queue_dest(E.q, name);
}

static uint16_t io_dest_qid(void *ud, void *owner, size_t index) {
  (void)ud;
  return ((rt_t *)owner)->dests[index].qid;
}

static int io_wait(void *ud, uint16_t qid, uint64_t seq, void (*cb)(void *, int), void *cb_ud) {
  (void)ud;
  dest_t *d = E.by_qid[qid];
  if (!d || !d->w) return 1;
  return cad_delivery_wait(d->w, seq, cb, cb_ud);
}

static void io_reply(void *ud, void *req, const char *ack, size_t len, unsigned flags) {
  (void)ud;
  cad_mllp_reply(req, ack, len, (flags & CAD_PIPE_REPLY_CLOSE) ? CAD_MLLP_REPLY_CLOSE : 0);
}

static void io_hold(void *ud, void *owner, int delta) {
  (void)ud;
  if (delta > 0) ((rt_t *)owner)->refs++;
  else rt_release(owner);
}

static uint16_t io_lane_qid(void *ud, void *owner, size_t index, const char *p, size_t len) {
  (void)ud;
  return lane_qid(owner, index, p, len);
}

static const cad_pipe_io_t engine_io = {NULL,    io_append, io_dead_letter, io_dest, io_dest_qid,
                                        io_wait, io_reply,  NULL,           io_hold, NULL};

static void on_frame(cad_mllp_req_t *req, int status, cad_str_t frame, void *data) {
  lsn_t *ls = data;
  if (cad_admin_channel_paused(E.admin, ls->ch->cc->name)) {
    /* Paused by an operator: no ACK, the connection closes, the sender
     * sends again later (MLLP's usual recovery). */
    cad_admin_channel_refused(E.admin, ls->ch->cc->name);
    cad_mllp_reply(req, NULL, 0, CAD_MLLP_REPLY_CLOSE);
    return;
  }
  const cad_mllp_conn_info_t *ci = cad_mllp_req_conn(req);
  cad_pipe_frame_t f = {req, status, frame, 0, false, ci->id, ci->peer, NULL};
  if (status == CAD_E_TOOBIG) f.size = cad_mllp_req_size(req, &f.cut);
  cad_pipe_frame(&E.pipe, &ls->ch->pc, &f);
}

static void log_ctx_for(cad_log_ctx_t *c, const chan_t *ch, const cad_mllp_conn_info_t *ci) {
  *c = (cad_log_ctx_t)CAD_LOG_CTX_INIT;
  c->channel = ch ? ch->cc->name : NULL;
  if (ci) {
    c->peer = ci->peer;
    c->conn = ci->id;
  }
}

/* A refusal before the pipeline, as an archive record (archive.h). */
static void archive_refused(const chan_t *ch, const cad_mllp_conn_info_t *ci, const char *status,
                            const char *reason) {
  cad_archive_refused(E.pipe.archive, &E.pipe.last_id, ch ? ch->cc->name : NULL,
                      ci ? ci->peer : NULL, ci ? ci->id : 0, status, reason);
}

static void on_event(const cad_mllp_event_t *ev, void *data) {
  lsn_t *ls = data;
  chan_t *ch = ls->ch;
  cad_log_ctx_t c;
  log_ctx_for(&c, ch, ev->conn);
  switch (ev->kind) {
    case CAD_MLLP_EV_OPEN:
      ch->st->conns_opened++, ch->st->conns_open++;
      CAD_LOG(CAD_LOG_INFO, "conn.open", &c, NULL);
      break;
    case CAD_MLLP_EV_REFUSED:
      ch->st->conns_refused++;
      c.outcome = "refused";
      CAD_LOG(CAD_LOG_WARN, "conn.refused", &c, "max_connections reached");
      break;
    case CAD_MLLP_EV_CLOSE: {
      cad_log_num_t skipped = {"skipped_bytes", ev->count};
      ch->st->skipped_bytes += ev->count;
      if (ch->st->conns_open) ch->st->conns_open--;
      c.outcome = ev->reason;
      if (ev->err) c.error = cad_err_name(ev->err);
      if (ev->count) {
        c.nums = &skipped;
        c.nnums = 1;
      }
      CAD_LOG(CAD_LOG_INFO, "conn.close", &c, NULL);
      if (ev->reason && (!strcmp(ev->reason, "frame_timeout") || !strcmp(ev->reason, "garbage")))
        archive_refused(ch, ev->conn, ev->reason,
                        !strcmp(ev->reason, "garbage")
                            ? "bytes outside any frame past the bound: connection closed"
                            : "a frame was not finished in time: connection closed");
      break;
    }
    case CAD_MLLP_EV_BADFRAME:
      ch->st->frame_errors++;
      c.bytes = (int64_t)ev->count;
      c.error = cad_err_name(ev->err);
      CAD_LOG(CAD_LOG_WARN, "frame.dropped", &c, "%s",
              ev->reason && !strcmp(ev->reason, "stray_end_block")
                  ? "end block not followed by a carriage return inside a frame (NAKed)"
                  : "start block inside an unfinished frame");
      archive_refused(ch, ev->conn, "bad_frame",
                      ev->reason && !strcmp(ev->reason, "stray_end_block")
                          ? "end block not followed by a carriage return (NAKed)"
                          : "start block inside an unfinished frame (dropped)");
      break;
    case CAD_MLLP_EV_SKIPPED:
      c.bytes = (int64_t)ev->count;
      CAD_LOG(CAD_LOG_WARN, "frame.skipped", &c,
              "bytes outside any frame (reported once; the total comes with conn.close)");
      break;
    case CAD_MLLP_EV_PAUSE:
      CAD_LOG(CAD_LOG_DEBUG, "conn.pause", &c, "backpressure, %llu in flight",
              (unsigned long long)ev->count);
      break;
    case CAD_MLLP_EV_RESUME: CAD_LOG(CAD_LOG_DEBUG, "conn.resume", &c, NULL); break;
    case CAD_MLLP_EV_ACCEPT_ERROR:
      c.error = cad_err_name(ev->err);
      CAD_LOG(CAD_LOG_ERROR, "conn.accept_failed", &c, NULL);
      break;
    case CAD_MLLP_EV_DENIED:
      ch->st->conns_denied++;
      c.outcome = "denied";
      CAD_LOG(CAD_LOG_WARN, "conn.denied", &c, "address not in the channel's allow list");
      archive_refused(ch, ev->conn, "denied", "address not in the channel's allow list");
      break;
    case CAD_MLLP_EV_TLS_FAILED:
      ch->st->tls_failures++;
      c.outcome = "tls_failed";
      if (ev->err) c.error = cad_err_name(ev->err);
      CAD_LOG(CAD_LOG_WARN, "tls.handshake_failed", &c, "%s", ev->detail ? ev->detail : "");
      archive_refused(ch, ev->conn, "tls_failed", ev->detail ? ev->detail : "TLS failed");
      break;
    case CAD_MLLP_EV_TLS_READY:
      CAD_LOG(CAD_LOG_INFO, "tls.ready", &c, "client certificate: %s",
              ev->detail && *ev->detail ? ev->detail : "(none)");
      break;
  }
}

/* ---- listeners ---------------------------------------------------------- */

static lsn_t *lsn_find(const char *host, int port) {
  for (lsn_t *l = E.lsns; l; l = l->next)
    if (l->port == port && strcmp(l->host, host) == 0) return l;
  return NULL;
}

static int lsn_start(chan_t *ch, const cad_conf_listen_t *ln, lsn_t **out) {
  lsn_t *ls = calloc(1, sizeof *ls);
  if (!ls) return CAD_E_NOMEM;
  snprintf(ls->host, sizeof ls->host, "%s", ln->host);
  ls->port = ln->port;
  ls->ch = ch;
  ch->rt->refs++; /* events may arrive until the listener is closed */
  cad_mllp_listener_opts_t o = listener_opts(ch->cc, ln);
  listener_tls(&o, ch);
  int rc = cad_mllp_listener_start(E.loop, &o, on_frame, on_event, ls, &ls->l);
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = ch->cc->name;
  char addr[96];
  snprintf(addr, sizeof addr, strchr(ln->host, ':') ? "[%s]:%d" : "%s:%d", ln->host, ln->port);
  c.peer = addr;
  if (rc < 0) {
    c.error = cad_err_name(rc);
    CAD_LOG(CAD_LOG_ERROR, "listen.failed", &c, "%s", cad_strerror(rc));
    rt_release(ch->rt);
    free(ls);
    return rc;
  }
  CAD_LOG(CAD_LOG_INFO, "listen", &c, NULL);
  *out = ls;
  return 0;
}

static void lsn_closed(void *arg) {
  lsn_t *ls = arg;
  rt_release(ls->ch->rt);
  free(ls);
  E.nclosing--;
  maybe_finish();
}

static void lsn_close(lsn_t *ls) {
  E.nclosing++;
  cad_mllp_listener_close(ls->l, DRAIN_MS, lsn_closed, ls);
}

/* Start every listener of rt that is not already open; on failure close the
 * ones started here and return the error. */
static int listeners_apply(rt_t *rt) {
  lsn_t *started = NULL;
  for (lsn_t *l = E.lsns; l; l = l->next) l->keep = false;
  int rc = 0;
  for (size_t i = 0; i < rt->cfg->nchannels && rc == 0; i++) {
    chan_t *ch = &rt->chans[i];
    for (size_t k = 0; k < ch->cc->nlisten && rc == 0; k++) {
      const cad_conf_listen_t *ln = &ch->cc->listen[k];
      lsn_t *ls = lsn_find(ln->host, ln->port);
      if (ls) {
        ls->keep = true;
        continue;
      }
      lsn_t *n = NULL;
      rc = lsn_start(ch, ln, &n);
      if (rc == 0) {
        n->next = started;
        n->keep = true;
        started = n;
      }
    }
  }
  if (rc < 0) {
    while (started) {
      lsn_t *n = started->next;
      lsn_close(started);
      started = n;
    }
    return rc;
  }
  /* Commit: rebind kept listeners, close removed ones, add new ones. */
  lsn_t **pp = &E.lsns;
  while (*pp) {
    lsn_t *l = *pp;
    if (!l->keep) {
      *pp = l->next;
      CAD_LOG(CAD_LOG_INFO, "listen.closed", NULL, "%s port %d removed from the configuration",
              l->host, l->port);
      lsn_close(l);
      continue;
    }
    pp = &l->next;
  }
  for (size_t i = 0; i < rt->cfg->nchannels; i++) {
    chan_t *ch = &rt->chans[i];
    for (size_t k = 0; k < ch->cc->nlisten; k++) {
      const cad_conf_listen_t *ln = &ch->cc->listen[k];
      lsn_t *ls = lsn_find(ln->host, ln->port);
      if (ls) {
        cad_mllp_listener_opts_t o = listener_opts(ch->cc, ln);
        listener_tls(&o, ch);
        cad_mllp_listener_update(ls->l, &o);
        cad_mllp_listener_set_data(ls->l, ls);
        if (ls->ch->rt != ch->rt) {
          ch->rt->refs++;
          rt_release(ls->ch->rt);
        }
        ls->ch = ch;
      }
    }
  }
  while (started) {
    lsn_t *n = started->next;
    started->next = E.lsns;
    E.lsns = started;
    started = n;
  }
  return 0;
}

static void source_stopped(void *arg) {
  (void)arg;
  maybe_finish();
}

/* The channels' other sources (source.h) follow rt: 0 or the first error
 * (logged by the source set). */
static int sources_apply(rt_t *rt) {
  cad_pipe_chan_t **pcs = calloc(rt->cfg->nchannels ? rt->cfg->nchannels : 1, sizeof *pcs);
  if (!pcs) return CAD_E_NOMEM;
  for (size_t i = 0; i < rt->cfg->nchannels; i++) pcs[i] = &rt->chans[i].pc;
  cad_source_env_t env = {E.loop, &E.pipe, E.data_dir};
  int rc = cad_sources_apply(&E.sources, &env, pcs, rt->cfg->nchannels, &E.nclosing, source_stopped,
                             NULL);
  free(pcs);
  return rc;
}

/* Process limits at start: the open-files limit must fit every
 * connection plus the reserve the listeners keep for the store and the
 * destinations (mllp_listener.h), or start is refused with a clear error;
 * and the bound on buffered inbound bytes.  0 or CAD_E_CONFIG. */
static int raise_fd_limit(const cad_config_t *cfg) {
  cad_mllp_set_buffer_limit(cfg->max_inbound_buffer);
  uint64_t limit, need;
  if (cad_mllp_raise_fd_limit(cad_config_connections(cfg), &limit, &need) == 0) return 0;
  CAD_LOG(CAD_LOG_ERROR, "start.fd_limit", NULL,
          "open files limited to %llu (hard limit) but max_connections of all listeners need "
          "%llu with the descriptors kept for the store and destinations: lower "
          "max_connections or raise the hard limit (ulimit -Hn, LimitNOFILE=)",
          (unsigned long long)limit, (unsigned long long)need);
  return CAD_E_CONFIG;
}

/* ---- stats, signals, shutdown ------------------------------------------- */

/* Per destination: the queue's view and the worker's counters. */
static void log_dest_stats(void) {
  bool running[CAD_JOURNAL_MAX_DESTS];
  for (size_t i = 0; i < CAD_JOURNAL_MAX_DESTS; i++) running[i] = E.by_qid[i] && E.by_qid[i]->w;
  if (E.q) cad_stats_log_queue(E.q, E.dest_counters, running);
}

static void stats_tick(uv_timer_t *t) {
  (void)t;
  cad_stats_log();
  log_dest_stats();
}

static void stats_timer_apply(void) {
  uint64_t iv = E.rt->cfg->stats_interval_ms;
  if (iv) uv_timer_start(&E.stats_timer, stats_tick, iv, iv);
  else uv_timer_stop(&E.stats_timer);
}

static void log_prepare(uv_prepare_t *h) {
  (void)h;
  cad_log_flush();
}

static void close_handles(void) {
  uv_close((uv_handle_t *)&E.sig_term, NULL);
  uv_close((uv_handle_t *)&E.sig_int, NULL);
  uv_close((uv_handle_t *)&E.sig_hup, NULL);
  uv_close((uv_handle_t *)&E.stats_timer, NULL);
  uv_close((uv_handle_t *)&E.log_prep, NULL);
  cad_admin_close(E.admin);
}

static void shutdown_engine(const char *why) {
  if (E.stopping) return;
  E.stopping = true;
  CAD_LOG(CAD_LOG_INFO, "shutdown", NULL, "%s: closing listeners, finishing messages in flight",
          why);
  log_dest_stats(); /* the queue's and destinations' counters, while they run */
  while (E.lsns) {
    lsn_t *n = E.lsns->next;
    lsn_close(E.lsns);
    E.lsns = n;
  }
  cad_source_env_t env = {E.loop, &E.pipe, E.data_dir};
  cad_sources_stop_all(E.sources, &env, &E.nclosing, source_stopped, NULL);
  E.sources = NULL;
  close_handles();
  /* Workers finish the message in flight; the queue closes once listeners
   * (whose ACKs wait for it) and workers are done: see maybe_finish(). */
  if (E.rt) stop_workers(E.rt);
  if (E.rt_next) {
    rt_release(E.rt_next);
    E.rt_next = NULL;
  }
  /* The runtime goes when the last message in flight releases it. */
  rt_t *rt = E.rt;
  E.rt = NULL;
  rt_release(rt);
  maybe_finish();
}

static void queue_closed(void *arg) {
  (void)arg;
  E.q = NULL;
  if (E.lockfd >= 0) close(E.lockfd);
  E.lockfd = -1;
}

/* After shutdown: close the queue once nothing can append or deliver. */
static void maybe_finish(void) {
  if (!E.stopping || E.q_closing || !E.q || E.nclosing > 0) return;
  for (size_t i = 0; i < CAD_JOURNAL_MAX_DESTS; i++)
    if (E.by_qid[i]) return;
  E.q_closing = true;
  cad_queue_close(E.q, queue_closed, NULL);
}

static void log_config_errors(const char *event, const char *errors) {
  if (!errors) return;
  const char *p = errors;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n) CAD_LOG(CAD_LOG_ERROR, event, NULL, "%.*s", (int)n, p);
    p += n + (e ? 1 : 0);
  }
}

/* SIGHUP: the files are read and checked on the thread pool (a slow or
 * hostile file never stops the loop, and the wait is bounded); the new
 * configuration is applied here, on the loop, by reload_apply(). */
#define RELOAD_TIMEOUT_MS 30000

/* At a reload: the admin API takes the new tokens at once; what is read
 * only at start (the archive, the admin listener itself) says so. */
static void reload_start_only(const cad_config_t *was, const cad_config_t *now) {
  if (was && (was->archive_enabled != now->archive_enabled ||
              was->archive_retain_ms != now->archive_retain_ms ||
              was->archive_max_bytes != now->archive_max_bytes))
    CAD_LOG(CAD_LOG_WARN, "reload.start_only", NULL,
            "engine.archive changed: it applies at the next start; the archive keeps its settings");
  int rc = E.admin ? cad_admin_reload(E.admin, &now->admin) : now->admin.enabled ? 1 : 0;
  if (rc == 1)
    CAD_LOG(CAD_LOG_WARN, "reload.start_only", NULL,
            "admin: listener changed (address, TLS, on or off): it applies at the next start; "
            "tokens and open_metrics are applied now");
  else if (rc < 0)
    CAD_LOG(CAD_LOG_ERROR, "reload.admin_failed", NULL,
            "admin tokens not reloaded (%s): the previous tokens stay", cad_strerror(rc));
}

static int reload_apply_status(int rc, cad_config_t *cfg, char *errors);

/* Tell the admin API's waiting reload (if any) how it ended. */
static void reload_tell(int status, const char *errors) {
  void (*done)(void *, int, const char *) = E.reload_done;
  E.reload_done = NULL;
  if (done) done(E.reload_arg, status, errors);
}

static void reload_apply(void *ctx, int rc, cad_config_t *cfg, char *errors) {
  (void)ctx;
  char *copy = E.reload_done && errors ? strdup(errors) : NULL;
  int status = reload_apply_status(rc, cfg, errors);
  reload_tell(status, status == 0 ? NULL : copy ? copy : "the running configuration stays (see the log)");
  free(copy);
}

static int reload_apply_status(int rc, cad_config_t *cfg, char *errors) {
  if (E.stopping) {
    cad_config_free(cfg);
    free(errors);
    return CAD_E_STATE;
  }
  if (rc < 0) {
    log_config_errors("reload.refused", errors);
    if (rc == UV_ETIMEDOUT)
      CAD_LOG(CAD_LOG_ERROR, "reload.refused", NULL,
              "%s: reading took longer than %ds; the running configuration stays", E.config_path,
              RELOAD_TIMEOUT_MS / 1000);
    else
      CAD_LOG(CAD_LOG_ERROR, "reload.refused", NULL,
              "%s is invalid; the running configuration stays", E.config_path);
    free(errors);
    return rc;
  }
  free(errors);
  if (strcmp(cfg->data_dir, E.data_dir) != 0) {
    CAD_LOG(CAD_LOG_ERROR, "reload.refused", NULL,
            "engine.data_dir changed (%s -> %s): the queue moves only with a restart; the "
            "running configuration stays",
            E.data_dir, cfg->data_dir);
    cad_config_free(cfg);
    return CAD_E_CONFIG;
  }
  rt_t *rt = NULL;
  if ((rc = rt_create(cfg, &rt)) < 0 || (rc = listeners_apply(rt)) < 0) {
    if (rt) rt_release(rt);
    CAD_LOG(CAD_LOG_ERROR, "reload.refused", NULL,
            "%s could not be applied (%s); the running configuration stays", E.config_path,
            cad_strerror(rc));
    return rc;
  }
  /* A source that cannot start is logged; the channel runs without it. */
  (void)sources_apply(rt);
  rt_t *old = E.rt;
  E.rt = rt;
  reload_start_only(old ? old->cfg : NULL, rt->cfg);
  /* New workers start once the old ones have stopped, so one destination
   * never has two messages in flight. */
  if (E.rt_next) rt_release(E.rt_next); /* a reload that never started: replaced */
  E.rt_next = NULL;
  /* Workers of any earlier runtime (this one's, or one still stopping from
   * a previous reload) must all be gone first. */
  if (E.running_workers > 0) {
    rt->refs++;
    E.rt_next = rt;
    if (old) stop_workers(old);
  } else {
    start_workers(rt);
  }
  rt_release(old);
  cad_log_setup(rt->cfg->log_level, rt->cfg->log_format, -1);
  stats_timer_apply();
  CAD_LOG(CAD_LOG_INFO, "reload.done", NULL, "%s: %zu channels, %zu destinations", E.config_path,
          rt->cfg->nchannels, rt->cfg->ndests);
  return 0;
}

/* ---- the admin API's engine control (admin.h, cad_admin_ctl_t) ------------ */

static void admin_ctl_dest_pause(void *ud, uint16_t qid, bool paused) {
  (void)ud;
  dest_t *d = qid < CAD_JOURNAL_MAX_DESTS ? E.by_qid[qid] : NULL;
  if (d && d->w) cad_delivery_pause(d->w, paused);
}

static int admin_ctl_reload(void *ud, void (*done)(void *, int, const char *), void *arg) {
  (void)ud;
  if (E.stopping) return CAD_E_STATE;
  if (E.reload_done) return CAD_E_STATE; /* one asked through the API is still running */
  CAD_LOG(CAD_LOG_INFO, "reload", NULL, "admin API: re-reading %s", E.config_path);
  int rc = cad_config_load_async(E.loop, E.config_path, RELOAD_TIMEOUT_MS, reload_apply, NULL);
  if (rc < 0) return rc;
  E.reload_done = done;
  E.reload_arg = arg;
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  if (signum == SIGHUP) {
    CAD_LOG(CAD_LOG_INFO, "reload", NULL, "SIGHUP: re-reading %s", E.config_path);
    int rc = cad_config_load_async(E.loop, E.config_path, RELOAD_TIMEOUT_MS, reload_apply, NULL);
    if (rc < 0)
      CAD_LOG(
          CAD_LOG_ERROR, "reload.refused", NULL, "%s",
          rc == CAD_E_STATE ? "the previous reload is still reading its files" : cad_strerror(rc));
    return;
  }
  shutdown_engine(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void walk_open(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    CAD_LOG(CAD_LOG_ERROR, "shutdown.leak", NULL, "handle type %s still open",
            uv_handle_type_name(uv_handle_get_type(h)));
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus run CONFIG\n"
          "\n"
          "Run the engine on a configuration: listen for HL7 v2 over MLLP, write\n"
          "every message to the channel's destinations, then ACK it.\n"
          "\n"
          "  SIGTERM, SIGINT  stop accepting, finish messages in flight, exit 0\n"
          "  SIGHUP           re-read CONFIG; an invalid one is refused and the\n"
          "                   running configuration stays\n"
          "\n"
          "Logs go to stderr, one line per event (engine.log_format: kv | json).\n");
}

/* Lock the data directory and open the durable queue in it. */
static int open_queue(const cad_config_t *cfg) {
  E.data_dir = strdup(cfg->data_dir);
  if (!E.data_dir) return CAD_E_NOMEM;
  E.admin_ctl.data_dir = E.data_dir; /* the audit trail and the archive are under it */
  cad_queue_opts_t qo = {.data_dir = cfg->data_dir,
                         .segment_bytes = cfg->queue_segment_bytes,
                         .retain_age_ms = cfg->queue_retain_ms,
                         .retain_bytes = cfg->queue_retain_bytes,
                         .max_pending_bytes = cfg->queue_max_pending,
                         .io = NULL /* the system's */};
  char err[4400];
  E.lockfd = cad_store_lock(cfg->data_dir, err, sizeof err);
  if (E.lockfd < 0) {
    int e = E.lockfd;
    E.lockfd = -1;
    CAD_LOG(CAD_LOG_ERROR, "start.locked", NULL, "%s", err);
    return e;
  }
  char report[600];
  int rc = cad_queue_open(E.loop, &qo, &E.q, report, sizeof report);
  if (rc < 0) {
    CAD_LOG(CAD_LOG_ERROR, "start.queue_failed", NULL, "%s: %s", cfg->data_dir, cad_strerror(rc));
    close(E.lockfd);
    E.lockfd = -1;
    return rc;
  }
  if (report[0]) CAD_LOG(CAD_LOG_WARN, "queue.recovered", NULL, "%s", report);
  cad_queue_set_commit_hook(E.q, on_commit, NULL);
  return 0;
}

int cad_cli_run(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "caduceus run: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
    if (path) {
      fprintf(stderr, "caduceus run: one configuration file only\n");
      return 2;
    }
    path = argv[i];
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  cad_config_t *cfg = NULL;
  char *errors = NULL;
  int rc = cad_config_load(path, &cfg, &errors);
  if (rc < 0) {
    if (errors && *errors) fputs(errors, stderr);
    else fprintf(stderr, "caduceus run: %s: %s\n", path, cad_strerror(rc));
    if (errors && *errors && errors[strlen(errors) - 1] != '\n') fputc('\n', stderr);
    free(errors);
    return 1;
  }
  free(errors);
  signal(SIGPIPE, SIG_IGN);
  cad_log_setup(cfg->log_level, cfg->log_format, 2);

  memset(&E, 0, sizeof E);
  E.config_path = path;
  E.admin_ctl = (cad_admin_ctl_t){NULL, admin_ctl_dest_pause, admin_ctl_reload, NULL};
  E.admin_view =
      (cad_admin_view_t){&E.q, E.dest_counters, &E.stopping, &E.pipe.archive, &E.admin_ctl};
  cad_pipe_init(&E.pipe, &engine_io);
  E.pipe.lane_qid = io_lane_qid;
  uv_loop_t loop;
  uv_loop_init(&loop);
  E.loop = &loop;
  uv_signal_init(&loop, &E.sig_term);
  uv_signal_init(&loop, &E.sig_int);
  uv_signal_init(&loop, &E.sig_hup);
  uv_timer_init(&loop, &E.stats_timer);
  uv_prepare_init(&loop, &E.log_prep);
  uv_prepare_start(&E.log_prep, log_prepare);
  uv_unref((uv_handle_t *)&E.log_prep); /* never what keeps the loop running */
  cad_log_batch(true);

  E.lockfd = -1;
  if ((rc = raise_fd_limit(cfg)) < 0 || (rc = open_queue(cfg)) < 0) {
    cad_config_free(cfg);
    E.exit_status = 1;
    E.stopping = true;
    close_handles();
  } else if ((rc = rt_create(cfg, &E.rt)) < 0 || (rc = listeners_apply(E.rt)) < 0 ||
             (rc = sources_apply(E.rt)) < 0 ||
             (rc = cad_admin_start(E.loop, &cfg->admin, &E.admin_view, &E.admin)) < 0) {
    CAD_LOG(CAD_LOG_ERROR, "start.failed", NULL, "%s: %s", path, cad_strerror(rc));
    E.exit_status = 1;
    shutdown_engine("start failed");
  } else {
    uv_signal_start(&E.sig_term, on_signal, SIGTERM);
    uv_signal_start(&E.sig_int, on_signal, SIGINT);
    uv_signal_start(&E.sig_hup, on_signal, SIGHUP);
    stats_timer_apply();
    cad_pipe_archive_open(&E.pipe, cfg); /* failure: logged, the engine runs without it */
    start_workers(E.rt);
    CAD_LOG(CAD_LOG_INFO, "start", NULL, "%s: %zu channels, %zu destinations, pid %d", path,
            E.rt->cfg->nchannels, E.rt->cfg->ndests, (int)getpid());
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  cad_log_batch(false);
  cad_pipe_archive_close(&E.pipe); /* writes what is queued */
  if (E.exit_status == 0) cad_stats_log();
  free(E.data_dir);
  rc = uv_loop_close(&loop);
  if (rc < 0) {
    uv_walk(&loop, walk_open, NULL);
    CAD_LOG(CAD_LOG_ERROR, "shutdown.unclean", NULL, "uv_loop_close: %s", uv_strerror(rc));
    E.exit_status = 1;
  } else if (E.exit_status == 0) {
    CAD_LOG(CAD_LOG_INFO, "stopped", NULL, "clean shutdown");
  }
  cad_stats_free_all();
  return E.exit_status;
}
