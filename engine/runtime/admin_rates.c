/* admin_rates.c - per-minute counts over the last hour, for the console's
 * dashboard (admin_int.h).
 *
 * Once a minute (a uv_timer of the admin API, unref'd so it never keeps the
 * loop alive) each channel's `received` and `errors` and each destination's
 * `delivered` counter is read, and what it grew by since the last reading is
 * stored in a ring of 60 minutes.  GET /api/v1/rates gives, per name, those
 * 60 counts oldest first followed by the minute in progress.  Memory: at most
 * CAD_ADMIN_RATES_MAX names, about 500 bytes each, allocated as they appear.
 */
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"
#include "cad_error.h"
#include "journal.h"
#include "stats.h"

#define MINUTES 60
#define TICK_MS 60000

typedef struct series {
  char name[CAD_CONF_NAME_MAX + 16];
  bool dest;
  uint64_t base[2];             /* counters at the last tick */
  uint32_t per_min[2][MINUTES]; /* [0] received/delivered, [1] errors */
} series_t;

struct cad__admin_rates {
  uv_timer_t timer;
  cad_admin_t *a;
  series_t *s;
  size_t n, cap;
  unsigned head;                 /* the slot the next finished minute goes to */
  json_t *out_chans, *out_dests; /* cad__admin_rates_get's answer while it is built */
};

static series_t *find(cad__admin_rates_t *r, const char *name, bool dest, bool create) {
  for (size_t i = 0; i < r->n; i++)
    if (r->s[i].dest == dest && strcmp(r->s[i].name, name) == 0) return &r->s[i];
  if (!create || r->n >= CAD_ADMIN_RATES_MAX || strlen(name) >= sizeof r->s[0].name) return NULL;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    series_t *ns = realloc(r->s, cap * sizeof *ns);
    if (!ns) return NULL;
    r->s = ns;
    r->cap = cap;
  }
  series_t *x = &r->s[r->n++];
  memset(x, 0, sizeof *x);
  memcpy(x->name, name, strlen(name) + 1);
  x->dest = dest;
  return x;
}

/* The counters of every name now, as (name, dest, c0, c1) to fn. */
static void each_counter(cad_admin_t *a,
                         void (*fn)(cad__admin_rates_t *r, const char *, bool, uint64_t, uint64_t),
                         cad__admin_rates_t *r) {
  for (const cad_chan_stats_t *s = cad_stats_first(); s; s = s->next)
    fn(r, s->name, false, s->received, s->errors);
  cad_queue_t *q = *a->view.q;
  for (uint16_t i = 0; q && i < CAD_JOURNAL_MAX_DESTS; i++) {
    const cad_jdest_t *d = cad_queue_dest_info(q, i);
    if (d && d->name) fn(r, d->name, true, a->view.counters[i].delivered, a->view.counters[i].dead);
  }
}

static void tick_one(cad__admin_rates_t *r, const char *name, bool dest, uint64_t c0, uint64_t c1) {
  series_t *x = find(r, name, dest, true);
  if (!x) return;
  uint64_t c[2] = {c0, c1};
  for (int k = 0; k < 2; k++) {
    uint64_t d = c[k] >= x->base[k] ? c[k] - x->base[k] : 0;
    x->per_min[k][r->head] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    x->base[k] = c[k];
  }
}

static void on_tick(uv_timer_t *t) {
  cad__admin_rates_t *r = t->data;
  each_counter(r->a, tick_one, r);
  r->head = (r->head + 1) % MINUTES;
}

/* A name seen for the first time starts from its current counters. */
static void seed_one(cad__admin_rates_t *r, const char *name, bool dest, uint64_t c0, uint64_t c1) {
  series_t *x = find(r, name, dest, false);
  if (x) return;
  x = find(r, name, dest, true);
  if (x) x->base[0] = c0, x->base[1] = c1;
}

int cad__admin_rates_start(cad_admin_t *a, uv_loop_t *loop) {
  cad__admin_rates_t *r = calloc(1, sizeof *r);
  if (!r) return CAD_E_NOMEM;
  r->a = a;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  uv_timer_start(&r->timer, on_tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&r->timer);
  each_counter(a, seed_one, r);
  a->rates = r;
  a->jobs++; /* the admin lives until the timer has closed */
  return 0;
}

static void rates_closed(uv_handle_t *h) {
  cad__admin_rates_t *r = h->data;
  cad_admin_t *a = r->a;
  free(r->s);
  free(r);
  cad__admin_job_done(a);
}

void cad__admin_rates_stop(cad_admin_t *a) {
  cad__admin_rates_t *r = a->rates;
  if (!r) return;
  a->rates = NULL;
  uv_close((uv_handle_t *)&r->timer, rates_closed);
}

static json_t *series_json(const cad__admin_rates_t *r, const series_t *x, int k, uint64_t now) {
  json_t *arr = json_array();
  for (unsigned i = 0; arr && i < MINUTES; i++)
    json_array_append_new(arr, json_integer(x->per_min[k][(r->head + i) % MINUTES]));
  if (arr)
    json_array_append_new(arr,
                          json_integer((json_int_t)(now >= x->base[k] ? now - x->base[k] : 0)));
  return arr;
}

static void put_one(cad__admin_rates_t *r, const char *name, bool dest, uint64_t c0, uint64_t c1) {
  seed_one(r, name, dest, c0, c1); /* new since the last tick: counts from now */
  series_t *x = find(r, name, dest, false);
  if (!x) return;
  json_t *o = dest ? json_pack("{s:o, s:o}", "delivered", series_json(r, x, 0, c0), "dead_letters",
                               series_json(r, x, 1, c1))
                   : json_pack("{s:o, s:o}", "received", series_json(r, x, 0, c0), "errors",
                               series_json(r, x, 1, c1));
  json_t *into = dest ? r->out_dests : r->out_chans;
  if (o && into) json_object_set_new(into, name, o);
  else json_decref(o);
}

/* GET /api/v1/rates */
void cad__admin_rates_get(cad__admin_call_t *c) {
  cad__admin_rates_t *r = c->a->rates;
  if (!r) return cad__admin_error(c->res, 503, "unavailable", "no rates kept (not listening)");
  r->out_chans = json_object();
  r->out_dests = json_object();
  each_counter(c->a, put_one, r);
  json_t *chans = r->out_chans, *dests = r->out_dests;
  r->out_chans = r->out_dests = NULL;
  cad__admin_json(c->res, 200,
                  json_pack("{s:i, s:s, s:o?, s:o?}", "minutes", MINUTES, "order",
                            "oldest first; the last value is the minute in progress", "channels",
                            chans, "destinations", dests));
}
