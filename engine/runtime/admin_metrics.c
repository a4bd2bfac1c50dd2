/* admin_metrics.c - the Prometheus text exposition (format 0.0.4) of the
 * counters the engine already keeps (admin.h). */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "admin_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "cad_mem.h"
#include "journal.h"
#include "stats.h"

#ifndef CAD_VERSION
#define CAD_VERSION "unknown"
#endif

/* The exposition being written; err sticks at the first failed append. */
typedef struct out {
  cad_buf_t b;
  int err;
} out_t;

static void o_puts(out_t *o, const char *s) {
  if (!o->err && cad_buf_puts(&o->b, s) < 0) o->err = CAD_E_NOMEM;
}

static void o_putc(out_t *o, char c) {
  if (!o->err && cad_buf_putc(&o->b, c) < 0) o->err = CAD_E_NOMEM;
}

__attribute__((format(printf, 2, 3))) static void o_printf(out_t *o, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap); /* names and numbers: always short */
  va_end(ap);
  o_puts(o, line);
}

/* A label value with \, " and newline escaped. */
static void put_label(out_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\') o_puts(b, "\\\\");
    else if (*v == '"') o_puts(b, "\\\"");
    else if (*v == '\n') o_puts(b, "\\n");
    else o_putc(b, *v);
  }
}

static void family(out_t *b, const char *name, const char *type, const char *help) {
  o_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(out_t *b, const char *name, const char *label, const char *value, uint64_t x) {
  o_puts(b, name);
  if (label) {
    o_printf(b, "{%s=\"", label);
    put_label(b, value);
    o_puts(b, "\"}");
  }
  o_printf(b, " %llu\n", (unsigned long long)x);
}

/* A metric read from a uint64_t field of a stats struct. */
typedef struct field_metric {
  const char *name, *type, *help;
  size_t off; /* of a uint64_t in the stats struct */
} field_metric_t;

#define N_METRICS(t) (sizeof(t) / sizeof(t)[0])

/* Every metric of table t, one sample per stats struct: `label` (NULL for
 * none) valued by label_of(s), s from first(ctx) then next(s). */
static void field_metrics(out_t *b, const field_metric_t *t, size_t n, const char *label,
                          const void *(*first)(const void *ctx), const void *(*next)(const void *s),
                          const char *(*label_of)(const void *s), const void *ctx) {
  for (size_t m = 0; m < n; m++) {
    family(b, t[m].name, t[m].type, t[m].help);
    for (const void *s = first(ctx); s; s = next(s))
      sample(b, t[m].name, label, label ? label_of(s) : NULL,
             *(const uint64_t *)((const char *)s + t[m].off));
  }
}

#define CM(n, t, h, f) \
  { "caduceus_channel_" n, t, h, offsetof(cad_chan_stats_t, f) }
static const field_metric_t chan_metrics[] = {
    CM("received_total", "counter", "Frames received, refused ones included.", received),
    CM("accepted_total", "counter", "Messages answered AA/CA.", accepted),
    CM("rejected_total", "counter", "Messages answered AR/CR.", rejected),
    CM("filtered_total", "counter", "Messages accepted that no route took.", filtered),
    CM("errors_total", "counter", "Messages answered AE/CE.", errors),
    CM("received_bytes_total", "counter", "Message bytes received.", bytes),
    CM("dead_letters_total", "counter", "Messages a failed transform dead-lettered.",
       dead_lettered),
    CM("connections_total", "counter", "Connections accepted.", conns_opened),
    CM("open_connections", "gauge", "Connections open now.", conns_open),
};

static const void *chan_first(const void *ctx) {
  (void)ctx;
  return cad_stats_first();
}
static const void *chan_next(const void *s) { return ((const cad_chan_stats_t *)s)->next; }
static const char *chan_name(const void *s) { return ((const cad_chan_stats_t *)s)->name; }

/* One histogram's samples (the family line is the caller's): cumulative
 * buckets in seconds, then _sum and _count. */
static void hist(out_t *b, const char *name, const char *label, const char *value,
                 const cad_hist_t *h) {
  static const uint64_t bounds[CAD_HIST_NBOUNDS] = CAD_HIST_BOUNDS_US;
  uint64_t cum = 0;
  for (unsigned i = 0; i <= CAD_HIST_NBOUNDS; i++) {
    cum += h->bucket[i];
    o_printf(b, "%s_bucket{%s=\"", name, label);
    put_label(b, value);
    if (i < CAD_HIST_NBOUNDS)
      o_printf(b, "\",le=\"%g\"} %llu\n", (double)bounds[i] / 1e6, (unsigned long long)cum);
    else o_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
  }
  o_printf(b, "%s_sum{%s=\"", name, label);
  put_label(b, value);
  o_printf(b, "\"} %llu.%06llu\n", (unsigned long long)(h->sum_us / 1000000),
           (unsigned long long)(h->sum_us % 1000000));
  o_printf(b, "%s_count{%s=\"", name, label);
  put_label(b, value);
  o_printf(b, "\"} %llu\n", (unsigned long long)h->count);
}

static void channels(out_t *b) {
  field_metrics(b, chan_metrics, N_METRICS(chan_metrics), "channel", chan_first, chan_next,
                chan_name, NULL);
  static const char ack[] = "caduceus_channel_ack_latency_seconds";
  family(b, ack, "histogram", "From a frame received to its ACK handed to the connection.");
  for (const cad_chan_stats_t *s = cad_stats_first(); s; s = s->next)
    hist(b, ack, "channel", s->name, &s->ack_latency);
}

typedef struct dest_metric {
  const char *name, *type, *help;
  int which;
} dest_metric_t;

static const dest_metric_t dest_metrics[] = {
    {"caduceus_destination_depth", "gauge", "Messages waiting.", 0},
    {"caduceus_destination_delivered_total", "counter", "Messages delivered.", 1},
    {"caduceus_destination_attempts_total", "counter", "Delivery attempts.", 2},
    {"caduceus_destination_retries_total", "counter", "Attempts after a failure.", 3},
    {"caduceus_destination_dead_letters_total", "counter", "Messages dead-lettered.", 4},
    {"caduceus_destination_blocked", "gauge", "1 while blocked on a message.", 5},
};

static uint64_t dest_value(const cad_jdest_t *d, const cad_delivery_stats_t *c, int which) {
  switch (which) {
    case 0: return d->last_seq > d->done_seq ? d->last_seq - d->done_seq : 0;
    case 1: return c->delivered;
    case 2: return c->attempts;
    case 3: return c->retries;
    case 4: return c->dead;
    default: return c->blocked ? 1 : 0;
  }
}

static void destinations(out_t *b, const cad_admin_view_t *v, cad_queue_t *q) {
  for (size_t m = 0; m < sizeof dest_metrics / sizeof dest_metrics[0]; m++) {
    family(b, dest_metrics[m].name, dest_metrics[m].type, dest_metrics[m].help);
    for (uint16_t i = 0; q && i < CAD_JOURNAL_MAX_DESTS; i++) {
      const cad_jdest_t *d = cad_queue_dest_info(q, i);
      if (d && d->name)
        sample(b, dest_metrics[m].name, "destination", d->name,
               dest_value(d, &v->counters[i], dest_metrics[m].which));
    }
  }
}

/* Delivery latency and the age of the oldest waiting message. */
static void dest_times(out_t *b, const cad_admin_view_t *v, cad_queue_t *q) {
  static const char lat[] = "caduceus_destination_delivery_latency_seconds";
  static const char age[] = "caduceus_destination_oldest_waiting_seconds";
  family(b, lat, "histogram", "From a message queued to its delivery.");
  for (uint16_t i = 0; q && i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (d && d->name) hist(b, lat, "destination", d->name, &v->counters[i].latency);
  }
  family(b, age, "gauge",
         "Age of the oldest message waiting (the one the worker has in hand; 0 when none).");
  uint64_t now = cad_now_ms();
  for (uint16_t i = 0; q && i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (!d || !d->name) continue;
    uint64_t t = v->counters[i].head_time_ms;
    bool waiting = d->last_seq > d->done_seq;
    uint64_t ms = waiting && t && now > t ? now - t : 0;
    o_puts(b, age);
    o_puts(b, "{destination=\"");
    put_label(b, d->name);
    o_printf(b, "\"} %llu.%03llu\n", (unsigned long long)(ms / 1000),
             (unsigned long long)(ms % 1000));
  }
}

static void journal(out_t *b, cad_queue_t *q) {
  if (!q) return;
  cad_queue_stats_t qs;
  cad_queue_get_stats(q, &qs);
  family(b, "caduceus_journal_batches_total", "counter",
         "Journal writes made durable (fdatasync).");
  sample(b, "caduceus_journal_batches_total", NULL, NULL, qs.batches);
  family(b, "caduceus_journal_records_total", "counter", "Journal records committed.");
  sample(b, "caduceus_journal_records_total", NULL, NULL, qs.records);
  family(b, "caduceus_journal_failed_batches_total", "counter", "Journal writes that failed.");
  sample(b, "caduceus_journal_failed_batches_total", NULL, NULL, qs.failed_batches);
  family(b, "caduceus_journal_bytes", "gauge", "Bytes of the journal on disk.");
  sample(b, "caduceus_journal_bytes", NULL, NULL, cad_queue_bytes(q));
}

#define AM(n, t, h, f) \
  { "caduceus_archive_" n, t, h, offsetof(cad_archive_stats_t, f) }
static const field_metric_t arch_metrics[] = {
    AM("records_queued_total", "counter", "Records handed to the archive writer.", queued),
    AM("records_written_total", "counter", "Records written to the archive.", written),
    AM("records_dropped_total", "counter", "Records dropped: the writer's queue was full.",
       dropped),
    AM("records_failed_total", "counter", "Records whose write failed.", failed),
    AM("batches_total", "counter", "Archive write transactions.", batches),
    AM("pending_records", "gauge", "Records waiting for the writer (its lag).", pending),
    AM("pending_bytes", "gauge", "Bytes waiting for the writer.", pending_bytes),
};

static const void *one_first(const void *ctx) { return ctx; }
static const void *one_next(const void *s) {
  (void)s;
  return NULL;
}

static void archive(out_t *b, const cad_admin_view_t *v) {
  cad_archive_t *a = v->archive ? *v->archive : NULL;
  if (!a) return;
  cad_archive_stats_t st;
  cad_archive_get_stats(a, &st);
  field_metrics(b, arch_metrics, N_METRICS(arch_metrics), NULL, one_first, one_next, NULL, &st);
}

static uint64_t open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return 0;
  uint64_t n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n > 0 ? n - 1 : 0; /* not the one opendir holds */
}

static uint64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size = 0, res = 0;
  if (!f) return 0;
  if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
  fclose(f);
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void process(out_t *b, uint64_t start_ms) {
  family(b, "process_start_time_seconds", "gauge", "Start time of the process (Unix seconds).");
  o_printf(b, "process_start_time_seconds %llu.%03u\n", (unsigned long long)(start_ms / 1000),
           (unsigned)(start_ms % 1000));
  family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  sample(b, "process_resident_memory_bytes", NULL, NULL, rss_bytes());
  family(b, "process_open_fds", "gauge", "Open file descriptors.");
  sample(b, "process_open_fds", NULL, NULL, open_fds());
  family(b, "caduceus_build_info", "gauge", "The version of caduceus running (always 1).");
  o_puts(b, "caduceus_build_info{version=\"");
  put_label(b, CAD_VERSION);
  o_puts(b, "\"} 1\n");
}

/* What operators paused (admin_api.c): a gauge per channel and destination. */
static void paused(out_t *b, const cad_admin_t *a, cad_queue_t *q) {
  family(b, "caduceus_channel_paused", "gauge", "1 while an operator has paused the channel.");
  for (const cad_chan_stats_t *s = cad_stats_first(); s; s = s->next)
    sample(b, "caduceus_channel_paused", "channel", s->name,
           cad_admin_channel_paused(a, s->name) ? 1 : 0);
  family(b, "caduceus_destination_paused", "gauge",
         "1 while an operator has paused the destination's delivery.");
  for (uint16_t i = 0; q && i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (d && d->name)
      sample(b, "caduceus_destination_paused", "destination", d->name,
             cad_admin_dest_paused(a, i) ? 1 : 0);
  }
}

static int render(const cad_admin_view_t *view, const cad_admin_t *a, uint64_t start_ms, char **out,
                  size_t *len) {
  out_t o = {CAD_BUF_INIT, 0};
  cad_queue_t *q = *view->q;
  channels(&o);
  destinations(&o, view, q);
  dest_times(&o, view, q);
  if (a) paused(&o, a, q);
  journal(&o, q);
  archive(&o, view);
  process(&o, start_ms);
  if (o.err || !cad_buf_cstr(&o.b)) {
    cad_buf_free(&o.b);
    return CAD_E_NOMEM;
  }
  *len = o.b.len;
  *out = o.b.data; /* handed over, NUL-terminated */
  return 0;
}

int cad_admin_metrics(const cad_admin_view_t *view, uint64_t start_ms, char **out, size_t *len) {
  return render(view, NULL, start_ms, out, len);
}

int cad__admin_metrics_all(const cad_admin_t *a, char **out, size_t *len) {
  return render(&a->view, a, a->start_ms, out, len);
}
