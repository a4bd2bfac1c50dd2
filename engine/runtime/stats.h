/* stats.h - per-channel counters, kept for the whole life of the process.
 *
 * A channel's counters are found by name, so they survive a configuration
 * reload that keeps the channel.  They are logged every stats_interval and
 * will be served by the metrics endpoint.  Loop thread only.
 *
 * Memory: the registry owns every cad_chan_stats_t; pointers stay valid
 * until cad_stats_free_all() at exit.
 */
#ifndef CAD_STATS_H
#define CAD_STATS_H

#include "cad_hist.h"
#include <stdbool.h>
#include <stdint.h>

#include "config.h" /* CAD_CONF_NAME_MAX */

typedef struct cad_chan_stats {
  struct cad_chan_stats *next;
  char name[CAD_CONF_NAME_MAX + 1]; /* a channel name, whole (config.h) */
  uint64_t received;                /* frames received (including refused ones) */
  uint64_t accepted;                /* ACKed AA/CA: on every destination */
  uint64_t rejected;                /* answered AR/CR: could not be parsed, or too big */
  uint64_t errors;                  /* answered AE/CE: a destination failed */
  uint64_t unanswered;              /* the ACK could not be built (a broken header is
                             answered all the same, from a stand-in) */
  uint64_t bytes;                   /* message bytes received */
  uint64_t queued;                  /* messages whose records reached the durable queue */
  uint64_t filtered;                /* accepted but taken by no route (unrouted: drop) */
  uint64_t dead_lettered;           /* a transform failed and on_error is dead_letter */
  uint64_t conns_opened, conns_refused, frame_errors;
  uint64_t skipped_bytes; /* outside any frame; added when a connection closes */
  uint64_t conns_denied;  /* closed at once: address not in `allow` */
  uint64_t tls_failures;  /* TLS handshakes (or records) that failed */
  uint64_t conns_open;    /* connections open now (a gauge) */
  cad_hist_t ack_latency; /* frame received -> ACK handed to the connection */
} cad_chan_stats_t;

/* The counters of channel `name` (created at zero the first time), or NULL
 * when out of memory. */
cad_chan_stats_t *cad_stats_get(const char *name);
/* First entry of the registry (iterate with ->next). */
cad_chan_stats_t *cad_stats_first(void);
void cad_stats_free_all(void);
/* One "stats" log line per channel, at info level. */
void cad_stats_log(void);

/* One "stats.queue" line for the queue and one "stats.dest" line per
 * destination whose running[qid] is set, its counters counters[qid] (both
 * CAD_JOURNAL_MAX_DESTS long, by queue id). */
struct cad_queue;
struct cad_delivery_stats;
void cad_stats_log_queue(const struct cad_queue *q, const struct cad_delivery_stats *counters,
                         const bool *running);

#endif
