/* delivery.c - the per-destination delivery state machine. */
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

typedef enum { ST_IDLE, ST_READING, ST_WAITING, ST_SENDING, ST_BACKOFF, ST_MARKING } state_t;

struct cad_delivery {
  uv_loop_t *loop;
  cad_queue_t *q;
  uint16_t dest;
  char *name;
  cad_dest_driver_t drv;
  cad_delivery_opts_t o;
  cad_queue_reader_t reader;
  uv_timer_t timer;
  state_t st;
  bool notified;          /* new records arrived while reading */
  bool stopping;
  uint32_t attempts;      /* of the message in flight */
  uint64_t seq;           /* the message in flight */
  uint8_t mark_type;      /* DONE or DEAD being recorded */
  char mark_reason[160];
  char last_err[96];
  waiter_t *waiters, *waiters_tail; /* in seq order */
  cad_delivery_stats_t stats;
  uint64_t rng;
  void (*stop_done)(void *);
  void *stop_arg;
};

static void next_message(cad_delivery_t *w);
static void send_current(cad_delivery_t *w);
static void start_mark(cad_delivery_t *w);

static void on_read_retry(uv_timer_t *t) { next_message(t->data); }
static void on_mark_retry(uv_timer_t *t) {
  cad_delivery_t *w = t->data;
  w->st = ST_MARKING;
  start_mark(w);
}

static void log_ctx(const cad_delivery_t *w, cad_log_ctx_t *c, cad_log_num_t *nums, size_t *nn) {
  *c = (cad_log_ctx_t)CAD_LOG_CTX_INIT;
  c->channel = NULL;
  nums[0] = (cad_log_num_t){"seq", w->seq};
  nums[1] = (cad_log_num_t){"attempt", w->attempts};
  *nn = 2;
  c->nums = nums;
  c->nnums = *nn;
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

static void finish_stop(cad_delivery_t *w) {
  fail_all_waiters(w);
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

/* Is the worker allowed to end now? (called at every resting point) */
static bool maybe_stop(cad_delivery_t *w) {
  if (!w->stopping) return false;
  if (w->st == ST_READING || w->st == ST_SENDING || w->st == ST_MARKING) return false;
  finish_stop(w);
  return true;
}

static void on_marked(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  cad_delivery_t *w = ud;
  w->st = ST_IDLE;
  if (status) {
    /* The record could not be written (disk full?): the message stays
     * unfinished; try the mark again after a pause. */
    cad_log_ctx_t c;
    cad_log_num_t nums[2];
    size_t nn;
    log_ctx(w, &c, nums, &nn);
    c.error = cad_err_name(status);
    CAD_LOG(CAD_LOG_ERROR, "dest.mark_failed", &c, "destination=%s; retrying in 1 s", w->name);
    w->st = ST_BACKOFF;
    if (maybe_stop(w)) return;
    uv_timer_start(&w->timer, on_mark_retry, 1000, 0);
    return;
  }
  w->reader.after = w->seq;
  w->seq = 0;
  w->stats.in_flight_seq = 0;
  if (maybe_stop(w)) return;
  next_message(w);
}

static void give_up(cad_delivery_t *w, const char *why) {
  cad_log_ctx_t c;
  cad_log_num_t nums[2];
  size_t nn;
  log_ctx(w, &c, nums, &nn);
  c.outcome = "dead_letter";
  CAD_LOG(CAD_LOG_WARN, "dest.dead_letter", &c, "destination=%s reason=%s", w->name, why);
  w->stats.dead++;
  w->st = ST_MARKING;
  w->mark_type = CAD_JREC_DEAD;
  snprintf(w->mark_reason, sizeof w->mark_reason, "%s after %u attempt(s)", why, w->attempts);
  resolve_waiters(w, w->seq, CAD_E_IO);
  start_mark(w);
}

static void start_mark(cad_delivery_t *w) {
  int rc;
  if (w->mark_type == CAD_JREC_DEAD)
    rc = cad_queue_mark(w->q, w->dest, CAD_JREC_DEAD, w->seq, w->mark_reason,
                        w->reader.rec.payload.data, w->reader.rec.payload.len, on_marked, w);
  else
    rc = cad_queue_mark(w->q, w->dest, CAD_JREC_DONE, w->seq, NULL, NULL, 0, on_marked, w);
  if (rc) on_marked(w, rc, NULL, 0);
}

static void on_backoff(uv_timer_t *t) {
  cad_delivery_t *w = t->data;
  if (maybe_stop(w)) return;
  send_current(w);
}

static uint64_t rnd(cad_delivery_t *w) {
  /* xorshift64: jitter only, not security. */
  w->rng ^= w->rng << 13;
  w->rng ^= w->rng >> 7;
  w->rng ^= w->rng << 17;
  return w->rng;
}

static void on_delivered(void *ctx, cad_deliver_outcome_t outcome, const char *detail) {
  cad_delivery_t *w = ctx;
  if (outcome == CAD_DELIVER_OK) {
    w->stats.delivered++;
    if (w->stats.blocked) {
      cad_log_ctx_t c;
      cad_log_num_t nums[2];
      size_t nn;
      log_ctx(w, &c, nums, &nn);
      CAD_LOG(CAD_LOG_WARN, "dest.unblocked", &c, "destination=%s", w->name);
    }
    w->stats.blocked = 0;
    w->st = ST_MARKING;
    w->mark_type = CAD_JREC_DONE;
    resolve_waiters(w, w->seq, 0);
    start_mark(w);
    return;
  }
  snprintf(w->last_err, sizeof w->last_err, "%s", detail ? detail : "failed");
  bool permanent = outcome == CAD_DELIVER_FAIL;
  bool exhausted = w->o.max_attempts && w->attempts >= w->o.max_attempts;
  if (w->o.dead_letter && (permanent || exhausted)) {
    give_up(w, w->last_err);
    return;
  }
  cad_log_ctx_t c;
  cad_log_num_t nums[2];
  size_t nn;
  log_ctx(w, &c, nums, &nn);
  c.outcome = permanent ? "failed" : "retry";
  if ((permanent || exhausted) && !w->stats.blocked) {
    w->stats.blocked = 1;
    CAD_LOG(CAD_LOG_ERROR, "dest.blocked", &c,
            "destination=%s reason=%s: queue blocked on this message; keeps retrying", w->name,
            w->last_err);
  } else {
    CAD_LOG(CAD_LOG_WARN, "dest.retry", &c, "destination=%s reason=%s", w->name, w->last_err);
  }
  w->stats.retries++;
  uint64_t delay = w->o.retry_initial_ms;
  for (uint32_t i = 1; i < w->attempts && delay < w->o.retry_max_ms; i++) delay *= 2;
  if (delay > w->o.retry_max_ms || w->stats.blocked) delay = w->o.retry_max_ms;
  delay = delay / 2 + rnd(w) % (delay / 2 + 1);
  w->st = ST_BACKOFF;
  if (maybe_stop(w)) return;
  uv_timer_start(&w->timer, on_backoff, delay, 0);
}

static void send_current(cad_delivery_t *w) {
  w->attempts++;
  w->stats.attempts++;
  w->st = ST_SENDING;
  int rc = w->drv.deliver(w->drv.impl, w->reader.rec.payload.data, w->reader.rec.payload.len,
                          w->seq, on_delivered, w);
  if (rc) on_delivered(w, CAD_DELIVER_RETRY, cad_err_name(rc));
}

static void on_read(void *ud, int status) {
  cad_delivery_t *w = ud;
  w->st = ST_IDLE;
  if (maybe_stop(w)) return;
  if (status == 1) {
    w->seq = w->reader.rec.seq;
    w->stats.in_flight_seq = w->seq;
    w->attempts = 0;
    send_current(w);
    return;
  }
  if (status == 0) {
    if (w->notified) {
      next_message(w);
      return;
    }
    w->st = ST_WAITING;
    return;
  }
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.error = cad_err_name(status);
  CAD_LOG(CAD_LOG_ERROR, "dest.read_failed", &c, "destination=%s", w->name);
  w->st = ST_BACKOFF;
  uv_timer_start(&w->timer, on_read_retry, 1000, 0);
}

static void next_message(cad_delivery_t *w) {
  if (maybe_stop(w)) return;
  w->notified = false;
  w->st = ST_READING;
  int rc = cad_queue_read(&w->reader, on_read, w);
  if (rc) on_read(w, rc);
}

void cad_delivery_notify(cad_delivery_t *w) {
  w->notified = true;
  if (w->st == ST_WAITING || w->st == ST_IDLE) next_message(w);
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
  w->o = *o;
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
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  *out = w;
  next_message(w);
  return 0;
}

int cad_delivery_wait(cad_delivery_t *w, uint64_t seq, void (*cb)(void *ud, int status),
                      void *ud) {
  if (w->reader.after >= seq) {
    cb(ud, 0);
    return 0;
  }
  waiter_t *x = malloc(sizeof *x);
  if (!x) return CAD_E_NOMEM;
  x->next = NULL;
  x->seq = seq;
  x->cb = cb;
  x->ud = ud;
  if (w->waiters_tail)
    w->waiters_tail->next = x;
  else
    w->waiters = x;
  w->waiters_tail = x;
  return 0;
}

void cad_delivery_get_stats(const cad_delivery_t *w, cad_delivery_stats_t *out) { *out = w->stats; }

void cad_delivery_stop(cad_delivery_t *w, void (*done)(void *arg), void *arg) {
  w->stopping = true;
  w->stop_done = done;
  w->stop_arg = arg;
  if (w->st == ST_BACKOFF || w->st == ST_WAITING || w->st == ST_IDLE) {
    uv_timer_stop(&w->timer);
    w->st = ST_IDLE;
    finish_stop(w);
  }
}
