/* stats.c - per-channel counters (stats.h). */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery.h"
#include "journal.h"
#include "log.h"
#include "queue.h"

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

void cad_stats_log_queue(const cad_queue_t *q, const cad_delivery_stats_t *counters,
                         const bool *running) {
  cad_queue_stats_t qs;
  cad_queue_get_stats(q, &qs);
  cad_log_num_t qn[] = {
      {"batches", qs.batches},
      {"appends", qs.appends},
      {"records", qs.records},
      {"failed_batches", qs.failed_batches},
      {"refused_full", qs.refused_full},
      {"max_batch", qs.max_batch_appends},
      {"journal_bytes", cad_queue_bytes(q)},
  };
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.nums = qn;
  c.nnums = sizeof qn / sizeof qn[0];
  CAD_LOG(CAD_LOG_INFO, "stats.queue", &c, NULL);
  for (uint16_t i = 0; i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *info = cad_queue_dest_info(q, i);
    if (!running[i] || !info || !info->name) continue;
    const cad_delivery_stats_t *ds = &counters[i];
    uint64_t depth = info->last_seq > info->done_seq ? info->last_seq - info->done_seq : 0;
    cad_log_num_t nums[] = {
        {"depth", depth},         {"delivered", ds->delivered}, {"attempts", ds->attempts},
        {"retries", ds->retries}, {"dead", ds->dead},           {"blocked", ds->blocked},
    };
    cad_log_ctx_t dc = CAD_LOG_CTX_INIT;
    dc.nums = nums;
    dc.nnums = sizeof nums / sizeof nums[0];
    CAD_LOG(CAD_LOG_INFO, "stats.dest", &dc, "destination=%s", info->name);
  }
}
