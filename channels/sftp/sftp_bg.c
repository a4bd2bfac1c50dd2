/* sftp_bg.c - a worker thread with results back on the loop (sftp_bg.h). */
#include "sftp_bg.h"

#include <stdbool.h>
#include <stdlib.h>

#include "cad_error.h"

struct cad_bg {
  uv_loop_t *loop;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cond;
  uv_async_t async;
  cad_bg_job_t *todo_head, *todo_tail; /* for the thread */
  cad_bg_job_t *done_head, *done_tail; /* for the loop */
  int busy;
  bool quit, stopping;
  void (*closed)(void *);
  void *closed_arg;
};

static void push(cad_bg_job_t **h, cad_bg_job_t **t, cad_bg_job_t *j) {
  j->next = NULL;
  if (*t) (*t)->next = j;
  else *h = j;
  *t = j;
}

static void thread_main(void *arg) {
  cad_bg_t *b = arg;
  uv_mutex_lock(&b->mu);
  for (;;) {
    while (!b->todo_head && !b->quit) uv_cond_wait(&b->cond, &b->mu);
    cad_bg_job_t *j = b->todo_head;
    if (!j) break; /* quit, nothing left */
    b->todo_head = j->next;
    if (!b->todo_head) b->todo_tail = NULL;
    uv_mutex_unlock(&b->mu);
    j->run(j);
    uv_mutex_lock(&b->mu);
    push(&b->done_head, &b->done_tail, j);
    uv_async_send(&b->async);
  }
  uv_mutex_unlock(&b->mu);
}

static void on_closed(uv_handle_t *h) {
  cad_bg_t *b = h->data;
  void (*cb)(void *) = b->closed;
  void *arg = b->closed_arg;
  uv_cond_destroy(&b->cond);
  uv_mutex_destroy(&b->mu);
  free(b);
  if (cb) cb(arg);
}

static void finish_stop(cad_bg_t *b) {
  uv_mutex_lock(&b->mu);
  b->quit = true;
  uv_cond_signal(&b->cond);
  uv_mutex_unlock(&b->mu);
  uv_thread_join(&b->thread);
  uv_close((uv_handle_t *)&b->async, on_closed);
}

static void on_async(uv_async_t *a) {
  cad_bg_t *b = a->data;
  uv_mutex_lock(&b->mu);
  cad_bg_job_t *j = b->done_head;
  b->done_head = b->done_tail = NULL;
  uv_mutex_unlock(&b->mu);
  while (j) {
    cad_bg_job_t *next = j->next;
    b->busy--;
    j->done(j);
    j = next;
  }
  if (b->stopping && b->busy == 0 && !uv_is_closing((uv_handle_t *)&b->async)) finish_stop(b);
}

int cad_bg_start(uv_loop_t *loop, cad_bg_t **out) {
  cad_bg_t *b = calloc(1, sizeof *b);
  if (!b) return CAD_E_NOMEM;
  b->loop = loop;
  int rc = uv_mutex_init(&b->mu);
  if (rc == 0 && (rc = uv_cond_init(&b->cond)) != 0) uv_mutex_destroy(&b->mu);
  if (rc == 0 && (rc = uv_async_init(loop, &b->async, on_async)) != 0) {
    uv_cond_destroy(&b->cond);
    uv_mutex_destroy(&b->mu);
  }
  if (rc != 0) {
    free(b);
    return rc;
  }
  b->async.data = b;
  rc = uv_thread_create(&b->thread, thread_main, b);
  if (rc != 0) {
    b->closed = NULL;
    uv_close((uv_handle_t *)&b->async, on_closed);
    return rc;
  }
  *out = b;
  return 0;
}

int cad_bg_post(cad_bg_t *b, cad_bg_job_t *j) {
  if (b->stopping) return CAD_E_STATE;
  b->busy++;
  uv_mutex_lock(&b->mu);
  push(&b->todo_head, &b->todo_tail, j);
  uv_cond_signal(&b->cond);
  uv_mutex_unlock(&b->mu);
  return 0;
}

int cad_bg_busy(const cad_bg_t *b) { return b->busy; }

void cad_bg_stop(cad_bg_t *b, void (*closed)(void *arg), void *arg) {
  b->stopping = true;
  b->closed = closed;
  b->closed_arg = arg;
  if (b->busy == 0) finish_stop(b);
}
