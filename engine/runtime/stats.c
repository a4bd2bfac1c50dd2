/* stats.c - per-channel counters (stats.h). */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static cad_chan_stats_t *registry;

cad_chan_stats_t *cad_stats_get(const char *name) {
  for (cad_chan_stats_t *s = registry; s; s = s->next)
    if (strcmp(s->name, name) == 0) return s;
  cad_chan_stats_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  snprintf(s->name, sizeof s->name, "%s", name);
  cad_chan_stats_t **tail = &registry;
  while (*tail) tail = &(*tail)->next;
  *tail = s;
  return s;
}

cad_chan_stats_t *cad_stats_first(void) { return registry; }

void cad_stats_free_all(void) {
  while (registry) {
    cad_chan_stats_t *n = registry->next;
    free(registry);
    registry = n;
  }
}

void cad_stats_log(void) {
  for (cad_chan_stats_t *s = cad_stats_first(); s; s = s->next) {
    cad_log_num_t nums[] = {
        {"received", s->received},
        {"accepted", s->accepted},
        {"rejected", s->rejected},
        {"errors", s->errors},
        {"unanswered", s->unanswered},
        {"bytes_in", s->bytes},
        {"conns_opened", s->conns_opened},
        {"conns_refused", s->conns_refused},
        {"frame_errors", s->frame_errors},
        {"skipped_bytes", s->skipped_bytes},
        {"queued", s->queued},
        {"filtered", s->filtered},
        {"dead_lettered", s->dead_lettered},
        {"conns_denied", s->conns_denied},
        {"tls_failures", s->tls_failures},
    };
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    c.channel = s->name;
    c.nums = nums;
    c.nnums = sizeof nums / sizeof nums[0];
    CAD_LOG(CAD_LOG_INFO, "stats", &c, NULL);
  }
}
