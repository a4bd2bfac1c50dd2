/* config_async.c - cad_config_load_async: load a configuration on libuv's
 * thread pool, for a reload that must not stop the event loop (see config.h).
 *
 * The job owns its result until it hands it to the callback.  A timer on the
 * loop bounds how long the caller waits: when it fires first, the callback
 * gets UV_ETIMEDOUT and the result, when the thread finally delivers it, is
 * freed here.  At most one job runs at a time (a stuck one included), so a
 * reader that never returns can hold one pool thread, never all of them. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cad_error.h"
#include "config.h"

typedef struct job {
  uv_work_t work;
  uv_timer_t timer;
  char *path;
  cad_config_loaded_cb cb;
  void *ctx;
  int rc;
  cad_config_t *cfg;
  char *errors;
  bool answered; /* cb called (result, or timeout) */
  bool timer_closed;
  bool on_pool; /* this job's work has not come back yet */
} job_t;

static bool running; /* a job is on the pool (loop thread only) */
static int live;      /* jobs allocated and not freed (loop thread only) */

int cad_config_async_jobs(void) { return live; }

/* Freed once both its timer is closed and its work came back: per job, not
 * `running`, which a later job may have set again by then. */
static void job_free(job_t *j) {
  if (!j->timer_closed || j->on_pool) return;
  free(j->path);
  free(j);
  live--;
}

static void timer_closed(uv_handle_t *h) {
  job_t *j = h->data;
  j->timer_closed = true;
  job_free(j);
}

static void do_load(uv_work_t *w) {
  job_t *j = w->data;
  j->rc = cad_config_load(j->path, &j->cfg, &j->errors);
}

static void on_timeout(uv_timer_t *t) {
  job_t *j = t->data;
  uv_close((uv_handle_t *)&j->timer, timer_closed);
  if (j->answered) return;
  j->answered = true;
  j->cb(j->ctx, UV_ETIMEDOUT, NULL, NULL);
}

static void loaded(uv_work_t *w, int status) {
  job_t *j = w->data;
  running = false;
  j->on_pool = false;
  if (!j->answered) {
    j->answered = true;
    uv_close((uv_handle_t *)&j->timer, timer_closed);
    int rc = status < 0 ? status : j->rc;
    j->cb(j->ctx, rc, rc == 0 ? j->cfg : NULL, j->errors); /* both pass to cb */
    if (rc != 0) cad_config_free(j->cfg);
  } else { /* timed out: nobody wants it now */
    cad_config_free(j->cfg);
    free(j->errors);
  }
  job_free(j);
}

int cad_config_load_async(uv_loop_t *loop, const char *path, uint64_t timeout_ms,
                          cad_config_loaded_cb cb, void *ctx) {
  if (running) return CAD_E_STATE;
  job_t *j = calloc(1, sizeof *j);
  if (!j || !(j->path = strdup(path))) {
    free(j);
    return CAD_E_NOMEM;
  }
  live++;
  j->cb = cb;
  j->ctx = ctx;
  j->work.data = j;
  j->timer.data = j;
  int rc = uv_timer_init(loop, &j->timer);
  if (rc < 0) {
    free(j->path);
    free(j);
    live--;
    return rc;
  }
  rc = uv_queue_work(loop, &j->work, do_load, loaded);
  if (rc < 0) {
    uv_close((uv_handle_t *)&j->timer, timer_closed); /* frees j */
    return rc;
  }
  running = true;
  j->on_pool = true;
  uv_timer_start(&j->timer, on_timeout, timeout_ms, 0);
  return 0;
}
