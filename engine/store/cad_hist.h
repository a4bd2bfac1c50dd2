/* cad_hist.h - a fixed-bucket latency histogram (Prometheus style: each
 * bucket counts observations <= its bound; the exposition makes them
 * cumulative).  Header-only, no allocation; one writer (the loop thread).
 * Used for ACK latency per channel (stats.h) and delivery latency per
 * destination (delivery.h); exposed by engine/runtime/admin_metrics.c. */
#ifndef CAD_HIST_H
#define CAD_HIST_H

#include <stdint.h>

#define CAD_HIST_NBOUNDS 16
/* Upper bounds in microseconds: 0.5 ms .. 60 s; the last bucket is +Inf. */
#define CAD_HIST_BOUNDS_US                                                                       \
  {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, \
   10000000, 30000000, 60000000}

typedef struct cad_hist {
  uint64_t bucket[CAD_HIST_NBOUNDS + 1]; /* not cumulative; [NBOUNDS] = above the last bound */
  uint64_t count;
  uint64_t sum_us;
} cad_hist_t;

static inline void cad_hist_observe_us(cad_hist_t *h, uint64_t us) {
  static const uint64_t bounds[CAD_HIST_NBOUNDS] = CAD_HIST_BOUNDS_US;
  unsigned i = 0;
  while (i < CAD_HIST_NBOUNDS && us > bounds[i]) i++;
  h->bucket[i]++;
  h->count++;
  h->sum_us += us;
}

#endif
