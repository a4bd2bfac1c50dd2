/* delivery.h - one delivery worker per destination: strictly in order, with
 * retries, backoff and dead letters.
 *
 * The worker reads its destination's FIFO from the durable queue and hands
 * one message at a time to the destination's driver (a file writer, an MLLP
 * sender, ...).  The next message waits until the current one is delivered
 * or given up: head-of-line blocking, which is what receiving systems expect
 * (a result must not overtake the order it belongs to).
 *
 *   delivered   messages are read in batches (up to 64) and handed over in
 *               order, up to the driver's window at once; one DONE record is
 *               committed per batch.  The next batch is delivered while that
 *               record commits, but never a third before it is written.  DONE
 *               records are written without a sync of their own and reach the
 *               disk with the next batch of appends or within 20 ms, so a
 *               crash can resend the messages of the last two batches and
 *               those delivered in the last 20 ms.  Delivery is at-least-once;
 *               receivers see a resent message with its original control id.
 *   retry       the driver reported a transient failure (connection refused,
 *               no ACK, AE mapped to retry): wait initial * 2^(n-1), capped at
 *               max, with jitter (a random 50-100 % of it), then try again.
 *   permanent   a failure the driver calls permanent (an MLLP destination's
 *               `on_ae`/`on_ar: dead_letter`) goes to the dead-letter queue at
 *               once, whatever on_failure says.
 *   give up     after max_attempts, per configuration:
 *                 dead_letter  the message is copied to the destination's
 *                              dead-letter queue with the reason, a DEAD
 *                              record finishes it, and the worker goes on;
 *                 block        keep retrying at the max interval, logging an
 *                              alert; nothing behind it moves.
 *
 * Lanes (`lanes: N`, `order_by:`; docs/lanes.md, engine/runtime/lanes.h):
 * a destination with N lanes has N queue FIFOs (lane 0 its own name, lane k
 * "NAME#k") and one worker per lane, each as above: in order within its
 * lane, lanes independent of each other.  So a message in retry holds only
 * its own lane, and `on_failure: block` blocks only the lane of the message
 * that exhausted its attempts (the other lanes go on; `blocked` is counted
 * per lane).  Dead letters and requeue work per lane (the dead letters of
 * lane k are those of queue "NAME#k"; a requeue puts them back in that
 * lane).  Fairness: lanes do not share a send window or a connection, and
 * every lane's batch reads are queued first come first served on the
 * thread pool, so a hot key only delays the keys that hash to its lane,
 * and within a lane messages go in arrival order (no key starves).
 *
 * The driver contract with lanes, two ways:
 *   - a kind whose one instance can serve several independent channels
 *     gives a cad_deliver_lane_fn and how many lanes it serves: every
 *     worker of the destination gets the same impl, and each call carries
 *     the worker's lane (0..lanes-1, cad_delivery_set_lane).  Calls of
 *     one lane obey `window` and complete in order; calls of different
 *     lanes are independent and may complete in any order;
 *   - a kind that does not is opened once per lane by the runtime, through
 *     the kind's ordinary open function (cad_dest_open, dest_kind.h): each
 *     instance only ever sees one lane's calls, as with no lanes at all.
 * Every kind today (file, mllp) uses the second way: one instance, so one
 * MLLP sender and one connection, per lane.  The first way is here for a
 * kind with its own pool (an HTTP client with N requests in flight); the
 * runtime gives it cad_delivery_set_lane once its kind table says so.
 *
 * Memory: the worker owns its reader, timer and the messages of one read
 * batch (at most CAD_QUEUE_READ_BATCH records, about CAD_QUEUE_READ_BYTES);
 * nothing else is held in memory whatever the backlog.  With lanes: N
 * times that.  Loop thread only.
 */
#ifndef CAD_DELIVERY_H
#define CAD_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "archive.h"
#include "cad_hist.h"
#include "queue.h"

typedef enum {
  CAD_DELIVER_OK = 0,
  CAD_DELIVER_RETRY = 1, /* transient: try again later */
  CAD_DELIVER_FAIL = 2,  /* permanent: give up now (dead letter or block) */
} cad_deliver_outcome_t;

/* Called by a driver exactly once per deliver call, on the loop thread.
 * detail: a short PHI-free reason ("ECONNREFUSED", "AE from receiver"). */
typedef void (*cad_deliver_done_cb)(void *ctx, cad_deliver_outcome_t outcome, const char *detail);

typedef struct cad_dest_driver {
  /* Start delivering p/len (valid until done is called).  Return 0 when
   * started, or a negative error (treated as a retry, done not called). */
  int (*deliver)(void *impl, const char *p, size_t len, uint64_t seq, cad_deliver_done_cb done,
                 void *ctx);
  void *impl;
  /* Messages handed over before the first completes (their done callbacks
   * must come in the order they were handed over); 0 = 1.  A file writer
   * batches them into one disk sync; an MLLP sender takes one at a time.
   * With a window, a driver must not let a message through after one it
   * failed in the same window (a file batch succeeds or fails as a whole):
   * the worker retries from the failed message. */
  unsigned window;
} cad_dest_driver_t;

/* A driver whose one impl serves several lanes (see the top of this file):
 * `lanes` is how many it serves; deliver_lane is called instead of
 * cad_dest_driver_t.deliver, with the worker's lane.  (Kept out of
 * cad_dest_driver_t so that drivers written before lanes, initialised by
 * position, stay as they are.) */
typedef int (*cad_deliver_lane_fn)(void *impl, unsigned lane, const char *p, size_t len,
                                   uint64_t seq, cad_deliver_done_cb done, void *ctx);

typedef struct cad_delivery_stats {
  uint64_t delivered, attempts, retries, dead; /* messages, not batches */
  uint64_t blocked;                            /* 1 while blocked on a message past max_attempts */
  uint64_t in_flight_seq;                      /* 0 = none */
  uint64_t head_time_ms; /* when the oldest message in hand was queued, 0 = none */
  cad_hist_t latency;    /* queued -> delivered, per message delivered */
} cad_delivery_stats_t;

typedef struct cad_delivery_opts {
  uint64_t retry_initial_ms; /* default 1000 */
  uint64_t retry_max_ms;     /* default 60000 */
  uint32_t max_attempts;     /* default 10; then dead_letter or block */
  bool dead_letter;          /* give up into the dead-letter queue (else block) */
  /* Where the worker counts (borrowed, must outlive it), so a worker that
   * replaces another (a reload) goes on counting where it stopped; its
   * blocked and in_flight_seq are reset at start.  NULL = its own, from 0. */
  cad_delivery_stats_t *counters;
} cad_delivery_opts_t;

typedef struct cad_delivery cad_delivery_t;

int cad_delivery_start(uv_loop_t *loop, cad_queue_t *q, uint16_t dest, const char *name,
                       const cad_dest_driver_t *drv, const cad_delivery_opts_t *o,
                       cad_delivery_t **out);
/* New records may be there (the queue's commit hook calls this). */
void cad_delivery_notify(cad_delivery_t *w);
/* Wait for message `seq` to be finished: cb(ud, 0) when delivered, cb(ud,
 * CAD_E_IO) when dead-lettered or the worker stops first.  For the
 * `delivered` ACK policy.  Returns 0 or CAD_E_NOMEM (then cb never runs).
 * A message delivered already gets cb(ud, 0) inside this call. */
int cad_delivery_wait(cad_delivery_t *w, uint64_t seq, void (*cb)(void *ud, int status), void *ud);
void cad_delivery_get_stats(const cad_delivery_t *w, cad_delivery_stats_t *out);
/* Make this worker lane `lane` of a driver that serves `lanes` lanes with
 * one impl: its messages go to deliver_lane(impl, lane, ...).  Call right
 * after start, in the same loop turn: start queues its first read to the
 * thread pool, and the messages read reach the driver on a later turn, so
 * they already see the lane (and the archive, below).  A start that handed
 * messages over inside the call would have to take both as options instead.
 * Returns 0, or CAD_E_INVAL when lane >= lanes (nothing changes). */
int cad_delivery_set_lane(cad_delivery_t *w, unsigned lane, unsigned lanes,
                          cad_deliver_lane_fn deliver_lane);
/* This worker's lane (0 without lanes) and queue id. */
unsigned cad_delivery_lane(const cad_delivery_t *w);
/* Record every attempt and dead letter in `a` (archive.h; borrowed, must
 * outlive the worker; NULL = stop recording).  Call right after start. */
void cad_delivery_set_archive(cad_delivery_t *w, cad_archive_t *a);
/* Hold (paused true) or go on: a held worker finishes the messages already
 * handed to the driver (their retries included) and hands over no more:
 * the next batch is read (so stats know the oldest waiting message) and
 * kept until resumed.  New messages are still queued.  Loop thread. */
void cad_delivery_pause(cad_delivery_t *w, bool paused);
bool cad_delivery_paused(const cad_delivery_t *w);
/* Stop: the message in flight finishes (its outcome is recorded), waiters
 * are failed, then `done` runs and the worker is freed. */
void cad_delivery_stop(cad_delivery_t *w, void (*done)(void *arg), void *arg);

#endif
