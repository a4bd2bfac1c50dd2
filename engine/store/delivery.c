/* delivery.c - the per-destination delivery state machine.
 *
 * The worker reads a batch of messages (up to CAD_QUEUE_READ_BATCH) from its
 * FIFO, submits them to the driver in order with at most `window` in flight
 * (drivers complete them in submission order), and once the whole batch is
 * delivered records one DONE for its last message.  While that DONE commits
 * the next batch is already read and delivered; a new DONE waits for the
 * previous one, so at most two batches are ever unrecorded.  On a failure the
 * worker stops submitting, lets the in-flight ones finish, records progress
 * up to the message before the failed one, and retries the failed message
 * with backoff; the messages after it follow only once it is delivered or
 * given up.
 */
#include "delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "log.h"

typedef struct waiter {
  struct waiter *next;
  uint64_t seq;
  void (*cb)(void *ud, int status);
  void *ud;
} waiter_t;

typedef enum {
  ST_IDLE,    /* nothing in hand */
  ST_READING, /* a batch read is on the thread pool */
  ST_WAITING, /* the FIFO is empty: waiting for the commit hook */
  ST_SENDING, /* delivering the batch */
  ST_BACKOFF, /* waiting before a retry */
  ST_DEAD,    /* recording a dead letter */
  ST_HELD,    /* paused with a batch read and not handed over (cad_delivery_pause) */
} state_t;

struct cad_delivery {
  uv_loop_t *loop;
  cad_queue_t *q;
  uint16_t dest;
  char *name;
  cad_dest_driver_t drv;
  cad_delivery_opts_t o;
  unsigned window;
  cad_queue_reader_t reader;
  uv_timer_t timer;
  state_t st;
  bool notified; /* new records arrived while reading */
  bool stopping;
  bool paused; /* cad_delivery_pause: read no further batch */
  /* the batch in hand: reader.recs[0..nrecs) */
  size_t nrecs;
  size_t next_submit; /* next record to hand to the driver */
  size_t completed;   /* records whose outcome came back */
  size_t in_flight;
  bool failing;        /* a failure: submit nothing more until retried */
  size_t fail_idx;     /* the record that failed */
  bool fail_permanent; /* its failure was CAD_DELIVER_FAIL */
  uint32_t attempts;   /* of the record at fail_idx (or being sent alone) */
  char last_err[256];
  char last_ok[128];    /* the answer (ACK code) for the record at last_ok_seq */
  uint64_t last_ok_seq; /* 0 = none */
  /* progress */
  uint64_t delivered_seq; /* every message up to here is finished (in memory) */
  uint64_t marked_seq;    /* DONE asked for up to here */
  bool mark_busy;         /* a DONE is being committed */
  uint64_t mark_want;     /* a DONE to ask for once the busy one is durable */
  char dead_reason[320];
  waiter_t *waiters, *waiters_tail;     /* in seq order */
  cad_delivery_stats_t own_stats, *ctr; /* ctr: opts.counters or own_stats */
  uint64_t rng;
  cad_archive_t *archive;           /* borrowed, NULL = none */
  unsigned lane;                    /* of its destination (cad_delivery_set_lane) */
  cad_deliver_lane_fn deliver_lane; /* NULL = drv.deliver */
  void (*stop_done)(void *);
  void *stop_arg;
};

static void next_batch(cad_delivery_t *w);
static void submit_more(cad_delivery_t *w);
static void request_mark(cad_delivery_t *w, uint64_t seq);
static void on_backoff(uv_timer_t *t);
static void on_read_retry(uv_timer_t *t);
static void archive_att(cad_delivery_t *w, uint64_t seq, cad_archive_att_t what, const char *why);

static void log_ctx(const cad_delivery_t *w, cad_log_ctx_t *c, cad_log_num_t nums[2],
                    uint64_t seq) {
  *c = (cad_log_ctx_t)CAD_LOG_CTX_INIT;
  nums[0] = (cad_log_num_t){"seq", seq};
  nums[1] = (cad_log_num_t){"attempt", w->attempts};
  c->nums = nums;
  c->nnums = 2;
}

static void resolve_waiters(cad_delivery_t *w, uint64_t upto, int status) {
  while (w->waiters && w->waiters->seq <= upto) {
    waiter_t *x = w->waiters;
    w->waiters = x->next;
    if (!w->waiters) w->waiters_tail = NULL;
    x->cb(x->ud, status);
    free(x);
  }
}

static void fail_all_waiters(cad_delivery_t *w) {
  while (w->waiters) {
    waiter_t *x = w->waiters;
    w->waiters = x->next;
    x->cb(x->ud, CAD_E_IO);
    free(x);
  }
  w->waiters_tail = NULL;
}

static void on_timer_closed(uv_handle_t *h) {
  cad_delivery_t *w = h->data;
  cad_queue_reader_free(&w->reader);
  void (*done)(void *) = w->stop_done;
  void *arg = w->stop_arg;
  free(w->name);
  free(w);
  if (done) done(arg);
}

/* Stop when nothing is under way any more (a resting point). */
static bool maybe_stop(cad_delivery_t *w) {
  if (!w->stopping) return false;
  if (w->st == ST_READING || w->in_flight || w->st == ST_DEAD) return false;
  /* Record what was delivered before going (a stop in the middle of a
   * batch would otherwise resend it all). */
  if (w->delivered_seq > w->marked_seq && !w->mark_busy) request_mark(w, w->delivered_seq);
  if (w->mark_busy) return false;
  if (w->st == ST_BACKOFF) uv_timer_stop(&w->timer);
  w->st = ST_IDLE;
  fail_all_waiters(w);
  uv_close((uv_handle_t *)&w->timer, on_timer_closed);
  return true;
}

static uint64_t rnd(cad_delivery_t *w) {
  /* xorshift64: jitter only, not security. */
  w->rng ^= w->rng << 13;
  w->rng ^= w->rng >> 7;
  w->rng ^= w->rng << 17;
  return w->rng;
}

/* ---- recording progress ---------------------------------------------------- */

static void on_marked(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  cad_delivery_t *w = ud;
  w->mark_busy = false;
  if (status) {
    /* The DONE could not be written (disk full?): nothing is lost, the
     * messages are just not recorded yet; ask again with the next one. */
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.error = cad_err_name(status);
    CAD_LOG(CAD_LOG_ERROR, "dest.mark_failed", &c, "destination=%s", w->name);
    if (w->mark_want < w->marked_seq) w->mark_want = w->marked_seq;
    w->marked_seq = 0;
  }
  if (w->mark_want) {
    uint64_t s = w->mark_want;
    w->mark_want = 0;
    request_mark(w, s);
  }
  if (maybe_stop(w)) return;
  /* A batch that finished while the mark was busy moves on now. */
  if (w->st == ST_IDLE && !w->failing && w->nrecs == 0) next_batch(w);
}

static void request_mark(cad_delivery_t *w, uint64_t seq) {
  if (seq <= w->marked_seq) return;
  if (w->mark_busy) {
    if (seq > w->mark_want) w->mark_want = seq;
    return;
  }
  w->mark_busy = true;
  w->marked_seq = seq;
  /* The DONE keeps the answer to the message it names (`queue show`). */
  const char *ack = seq == w->last_ok_seq && w->last_ok[0] ? w->last_ok : NULL;
  int rc = cad_queue_mark(w->q, w->dest, CAD_JREC_DONE, seq, ack, NULL, 0, on_marked, w);
  if (rc) {
    w->mark_busy = false;
    w->marked_seq = 0;
    w->mark_want = seq;
  }
}

/* ---- the batch ------------------------------------------------------------- */

static void batch_done(cad_delivery_t *w) {
  w->nrecs = 0;
  w->st = ST_IDLE;
  if (maybe_stop(w)) return;
  /* At most two batches unrecorded: the next one waits for the busy mark. */
  if (w->mark_busy && w->mark_want) return;
  next_batch(w);
}

static void on_dead_marked(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  cad_delivery_t *w = ud;
  const cad_jread_t *rec = &w->reader.recs[w->fail_idx];
  w->st = ST_SENDING;
  if (status) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.error = cad_err_name(status);
    CAD_LOG(CAD_LOG_ERROR, "dest.dead_letter_failed", &c, "destination=%s; retrying in 1 s",
            w->name);
    /* Try the dead letter again after a pause (the message stays in hand). */
    w->fail_permanent = true;
    w->st = ST_BACKOFF;
    if (maybe_stop(w)) return;
    uv_timer_start(&w->timer, on_backoff, 1000, 0);
    return;
  }
  w->ctr->dead++;
  archive_att(w, rec->seq, CAD_ARCH_DEAD, w->dead_reason);
  w->delivered_seq = rec->seq;
  w->marked_seq = rec->seq > w->marked_seq ? rec->seq : w->marked_seq;
  resolve_waiters(w, rec->seq, CAD_E_IO);
  w->failing = false;
  w->fail_permanent = false;
  w->attempts = 0;
  w->completed = w->fail_idx + 1;
  w->next_submit = w->fail_idx + 1;
  if (maybe_stop(w)) return;
  if (w->completed == w->nrecs) batch_done(w);
  else submit_more(w);
}

static void give_up(cad_delivery_t *w) {
  const cad_jread_t *rec = &w->reader.recs[w->fail_idx];
  cad_log_ctx_t c;
  cad_log_num_t nums[2];
  log_ctx(w, &c, nums, rec->seq);
  c.outcome = "dead_letter";
  CAD_LOG(CAD_LOG_WARN, "dest.dead_letter", &c, "destination=%s reason=%s", w->name, w->last_err);
  snprintf(w->dead_reason, sizeof w->dead_reason, "%s after %u attempt(s)", w->last_err,
           w->attempts);
  w->st = ST_DEAD;
  int rc = cad_queue_mark(w->q, w->dest, CAD_JREC_DEAD, rec->seq, w->dead_reason, rec->payload.data,
                          rec->payload.len, on_dead_marked, w);
  if (rc) on_dead_marked(w, rc, NULL, 0);
}

static void on_backoff(uv_timer_t *t) {
  cad_delivery_t *w = t->data;
  w->st = ST_SENDING;
  if (maybe_stop(w)) return;
  bool exhausted = w->o.max_attempts && w->attempts >= w->o.max_attempts;
  if (w->fail_permanent || (w->o.dead_letter && exhausted)) {
    give_up(w);
    return;
  }
  /* Retry from the failed record, alone first: the window opens again once
   * it is through. */
  w->failing = false;
  w->next_submit = w->fail_idx;
  w->completed = w->fail_idx;
  submit_more(w);
}

static void schedule_retry(cad_delivery_t *w) {
  const cad_jread_t *rec = &w->reader.recs[w->fail_idx];
  bool exhausted = w->o.max_attempts && w->attempts >= w->o.max_attempts;
  cad_log_ctx_t c;
  cad_log_num_t nums[2];
  log_ctx(w, &c, nums, rec->seq);
  c.outcome = "retry";
  if (exhausted && !w->ctr->blocked) {
    w->ctr->blocked = 1;
    CAD_LOG(CAD_LOG_ERROR, "dest.blocked", &c,
            "destination=%s reason=%s: the queue waits on this message and keeps retrying", w->name,
            w->last_err);
  } else {
    CAD_LOG(CAD_LOG_WARN, "dest.retry", &c, "destination=%s reason=%s", w->name, w->last_err);
  }
  w->ctr->retries++;
  uint64_t delay = w->o.retry_initial_ms;
  for (uint32_t i = 1; i < w->attempts && delay < w->o.retry_max_ms; i++) delay *= 2;
  if (delay > w->o.retry_max_ms || w->ctr->blocked) delay = w->o.retry_max_ms;
  delay = delay / 2 + rnd(w) % (delay / 2 + 1);
  w->st = ST_BACKOFF;
  if (maybe_stop(w)) return;
  uv_timer_start(&w->timer, on_backoff, delay, 0);
}

/* Every record submitted before the failure has come back: decide. */
static void handle_failure(cad_delivery_t *w, bool permanent) {
  if (w->fail_idx > 0) request_mark(w, w->reader.recs[w->fail_idx - 1].seq);
  bool exhausted = w->o.max_attempts && w->attempts >= w->o.max_attempts;
  /* A permanent failure (the driver's own verdict, e.g. `on_ar:
   * dead_letter`) is dead-lettered at once; retries running out follow
   * on_failure. */
  if (permanent || (w->o.dead_letter && exhausted)) {
    give_up(w);
    return;
  }
  schedule_retry(w);
}

/* What the destination answered for a delivered record (an MLLP ACK code),
 * kept for the DONE record that names it. */
static void note_answer(cad_delivery_t *w, uint64_t seq, const char *detail) {
  w->last_ok_seq = seq;
  cad_str_copy(w->last_ok, sizeof w->last_ok, detail);
}

/* The archive's record of one attempt (or dead letter) of `seq`. */
static void archive_att(cad_delivery_t *w, uint64_t seq, cad_archive_att_t what, const char *why) {
  if (w->archive) cad_archive_attempt(w->archive, w->dest, seq, what, why);
}

/* Queued (the record's time) to delivered (now), both wall clock. */
static void observe_latency(cad_delivery_t *w, const cad_jread_t *rec) {
  uint64_t now = cad_now_ms();
  cad_hist_observe_us(&w->ctr->latency, now > rec->time_ms ? (now - rec->time_ms) * 1000 : 0);
}

static void on_delivered(void *ctx, cad_deliver_outcome_t outcome, const char *detail) {
  cad_delivery_t *w = ctx;
  size_t idx = w->completed++;
  w->in_flight--;
  const cad_jread_t *rec = &w->reader.recs[idx];
  archive_att(w, rec->seq, (cad_archive_att_t)outcome, detail);
  if (w->failing) {
    if (idx < w->fail_idx) {
      /* Handed over before the failed one (completions come in order). */
      if (outcome == CAD_DELIVER_OK) {
        w->ctr->delivered++;
        observe_latency(w, rec);
        note_answer(w, rec->seq, detail);
        w->delivered_seq = rec->seq;
        resolve_waiters(w, rec->seq, 0);
      } else {
        snprintf(w->last_err, sizeof w->last_err, "%s", detail ? detail : "failed");
        w->fail_idx = idx;
        w->fail_permanent = outcome == CAD_DELIVER_FAIL;
      }
    }
    /* Records after the failed one are retried with it (one may then arrive
     * twice: at-least-once). */
    if (w->in_flight == 0) handle_failure(w, w->fail_permanent);
    return;
  }
  if (outcome == CAD_DELIVER_OK) {
    w->ctr->delivered++;
    observe_latency(w, rec);
    note_answer(w, rec->seq, detail);
    if (w->ctr->blocked) {
      cad_log_ctx_t c;
      cad_log_num_t nums[2];
      log_ctx(w, &c, nums, rec->seq);
      CAD_LOG(CAD_LOG_WARN, "dest.unblocked", &c, "destination=%s", w->name);
      w->ctr->blocked = 0;
    }
    w->attempts = 0;
    w->delivered_seq = rec->seq;
    resolve_waiters(w, rec->seq, 0);
    if (w->completed == w->nrecs) {
      request_mark(w, rec->seq);
      batch_done(w);
    } else {
      submit_more(w);
    }
    return;
  }
  snprintf(w->last_err, sizeof w->last_err, "%s", detail ? detail : "failed");
  w->failing = true;
  w->fail_idx = idx;
  w->fail_permanent = outcome == CAD_DELIVER_FAIL;
  if (w->in_flight == 0) handle_failure(w, w->fail_permanent);
}

static void submit_more(cad_delivery_t *w) {
  if (w->paused && !w->stopping && w->next_submit < w->nrecs) {
    /* Held: what is with the driver completes; the rest waits. */
    w->st = w->in_flight ? ST_SENDING : ST_HELD;
    return;
  }
  w->st = ST_SENDING;
  /* After a failure the failed record goes alone until it is through. */
  unsigned window = w->attempts ? 1 : w->window;
  while (!w->failing && !w->stopping && w->in_flight < window && w->next_submit < w->nrecs) {
    size_t i = w->next_submit++;
    const cad_jread_t *rec = &w->reader.recs[i];
    w->in_flight++;
    if (i == w->completed) {
      w->attempts++;
      w->ctr->head_time_ms = rec->time_ms;
    }
    w->ctr->attempts++;
    w->ctr->in_flight_seq = rec->seq;
    int rc = w->deliver_lane ? w->deliver_lane(w->drv.impl, w->lane, rec->payload.data,
                                               rec->payload.len, rec->seq, on_delivered, w)
                             : w->drv.deliver(w->drv.impl, rec->payload.data, rec->payload.len,
                                              rec->seq, on_delivered, w);
    if (rc) {
      /* Not handed over: no completion will come for it.  The ones before
       * it still complete, in order; then the failure is handled. */
      w->in_flight--;
      w->next_submit = i;
      archive_att(w, rec->seq, CAD_ARCH_RETRY, cad_err_name(rc));
      if (!w->failing || i < w->fail_idx) {
        w->failing = true;
        w->fail_idx = i;
        w->fail_permanent = false;
        snprintf(w->last_err, sizeof w->last_err, "%s", cad_err_name(rc));
      }
      if (w->in_flight == 0) handle_failure(w, false);
      return;
    }
  }
  if (w->stopping && w->in_flight == 0) maybe_stop(w);
}

static void on_read(void *ud, int status) {
  cad_delivery_t *w = ud;
  w->st = ST_IDLE;
  if (maybe_stop(w)) return;
  if (status == 1) {
    w->nrecs = w->reader.nrecs;
    w->next_submit = w->completed = 0;
    w->attempts = 0;
    /* The oldest waiting message is known even while held. */
    w->ctr->head_time_ms = w->reader.recs[0].time_ms;
    if (w->paused) {
      w->st = ST_HELD; /* cad_delivery_pause(w, false) hands it over */
      return;
    }
    submit_more(w);
    return;
  }
  if (status == 0) {
    w->ctr->head_time_ms = 0;
    if (w->notified) {
      next_batch(w);
      return;
    }
    w->st = ST_WAITING;
    return;
  }
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.error = cad_err_name(status);
  CAD_LOG(CAD_LOG_ERROR, "dest.read_failed", &c, "destination=%s; retrying in 1 s", w->name);
  w->st = ST_BACKOFF;
  uv_timer_start(&w->timer, on_read_retry, 1000, 0);
}

static void on_read_retry(uv_timer_t *t) {
  cad_delivery_t *w = t->data;
  w->st = ST_IDLE;
  next_batch(w);
}

static void next_batch(cad_delivery_t *w) {
  if (maybe_stop(w)) return;
  w->notified = false;
  w->nrecs = 0;
  w->st = ST_READING;
  int rc = cad_queue_read(&w->reader, on_read, w);
  if (rc) on_read(w, rc);
}

void cad_delivery_notify(cad_delivery_t *w) {
  w->notified = true;
  if (w->st == ST_WAITING) next_batch(w);
}

int cad_delivery_start(uv_loop_t *loop, cad_queue_t *q, uint16_t dest, const char *name,
                       const cad_dest_driver_t *drv, const cad_delivery_opts_t *o,
                       cad_delivery_t **out) {
  cad_delivery_t *w = calloc(1, sizeof *w);
  if (!w) return CAD_E_NOMEM;
  w->loop = loop;
  w->q = q;
  w->dest = dest;
  w->name = strdup(name);
  w->drv = *drv;
  w->window = drv->window ? drv->window : 1;
  if (w->window > CAD_QUEUE_READ_BATCH) w->window = CAD_QUEUE_READ_BATCH;
  w->o = *o;
  w->ctr = o->counters ? o->counters : &w->own_stats;
  w->ctr->blocked = 0;
  w->ctr->in_flight_seq = 0;
  w->ctr->head_time_ms = 0;
  if (!w->o.retry_initial_ms) w->o.retry_initial_ms = 1000;
  if (!w->o.retry_max_ms) w->o.retry_max_ms = 60000;
  if (w->o.retry_max_ms < w->o.retry_initial_ms) w->o.retry_max_ms = w->o.retry_initial_ms;
  w->rng = (uint64_t)(uintptr_t)w ^ uv_hrtime() ^ 0x9e3779b97f4a7c15ull;
  if (!w->rng) w->rng = 1;
  int rc = w->name ? cad_queue_reader_init(q, &w->reader, dest) : CAD_E_NOMEM;
  if (rc) {
    free(w->name);
    free(w);
    return rc;
  }
  w->delivered_seq = w->marked_seq = w->reader.after;
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  *out = w;
  next_batch(w);
  return 0;
}

int cad_delivery_wait(cad_delivery_t *w, uint64_t seq, void (*cb)(void *ud, int status), void *ud) {
  if (w->delivered_seq >= seq) {
    cb(ud, 0);
    return 0;
  }
  waiter_t *x = malloc(sizeof *x);
  if (!x) return CAD_E_NOMEM;
  x->next = NULL;
  x->seq = seq;
  x->cb = cb;
  x->ud = ud;
  if (w->waiters_tail) w->waiters_tail->next = x;
  else w->waiters = x;
  w->waiters_tail = x;
  return 0;
}

void cad_delivery_get_stats(const cad_delivery_t *w, cad_delivery_stats_t *out) { *out = *w->ctr; }

int cad_delivery_set_lane(cad_delivery_t *w, unsigned lane, unsigned lanes,
                          cad_deliver_lane_fn deliver_lane) {
  if (lane >= (lanes ? lanes : 1)) return CAD_E_INVAL;
  w->lane = lane;
  w->deliver_lane = deliver_lane;
  return 0;
}

unsigned cad_delivery_lane(const cad_delivery_t *w) { return w->lane; }

void cad_delivery_set_archive(cad_delivery_t *w, cad_archive_t *a) {
  w->archive = a;
  if (a) cad_archive_dest_name(a, w->dest, w->name);
}

void cad_delivery_stop(cad_delivery_t *w, void (*done)(void *arg), void *arg) {
  w->stopping = true;
  w->stop_done = done;
  w->stop_arg = arg;
  maybe_stop(w);
}

void cad_delivery_pause(cad_delivery_t *w, bool paused) {
  if (w->paused == paused) return;
  w->paused = paused;
  if (!paused && w->st == ST_HELD) submit_more(w);
}

bool cad_delivery_paused(const cad_delivery_t *w) { return w->paused; }
