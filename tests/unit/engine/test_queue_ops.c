/* test_queue_ops.c - operator actions on a running queue (queue_dlq.h via
 * cad_queue_exec) and the delivery worker's pause (delivery.h), on a real
 * libuv loop with a fake destination. */
#include "queue_dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cad_error.h"
#include "delivery.h"
#include "harness.h"
#include "log.h"

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/cad_test_queue_ops_%d", (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) abort();
  cad_log_setup(CAD_LOG_ERROR, CAD_LOG_KV, -1);
}

static void run_until(uv_loop_t *loop, bool (*done)(void *), void *arg, uint64_t ms) {
  uint64_t end = uv_hrtime() + ms * 1000000ull;
  while (!done(arg) && uv_hrtime() < end) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(200);
  }
}

typedef struct fake {
  int got, calls;
  int fail_first; /* permanent failures first: dead letters */
  char seen[64][80];
} fake_t;

static int fake_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  fake_t *f = impl;
  if (++f->calls <= f->fail_first) {
    done(ctx, CAD_DELIVER_FAIL, "rejected by the test");
    return 0;
  }
  if (f->got < 64) snprintf(f->seen[f->got], sizeof f->seen[0], "%.*s", (int)len, p);
  f->got++;
  done(ctx, CAD_DELIVER_OK, NULL);
  return 0;
}

static void hook(void *ud, uint16_t dest) {
  (void)dest;
  cad_delivery_notify(ud);
}

static void noop(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)ud, (void)status, (void)seqs, (void)n;
}

static void append(cad_queue_t *q, int d, const char *text) {
  cad_queue_item_t it = {(uint16_t)d, text, strlen(text)};
  CHECK_INT(cad_queue_append(q, &it, 1, noop, NULL), 0);
}

typedef struct op {
  const char *name;
  cad_dlq_view_t view;
  uint64_t no, moved, first, total;
  cad_dlq_item_t items[8];
  size_t n;
  int rc;
  bool done;
  int kind; /* 0 list, 1 requeue, 2 purge */
} op_t;

static int snap_op(void *ud, cad_queue_journals_t *js) {
  op_t *o = ud;
  return cad_dlq_view(js, o->name, &o->view);
}

static int scan_op(void *ud, cad_queue_journals_t *js) {
  op_t *o = ud;
  if (js->j || js->dlq) return CAD_E_STATE; /* the scan runs without the journals */
  return cad_dlq_list(js, &o->view, 0, 8, o->items, &o->n, &o->total);
}

static int scan_oldest(void *ud, cad_queue_journals_t *js) {
  op_t *o = ud;
  return cad_dlq_oldest_waiting(js, &o->view, &o->first);
}

static int exec_op(void *ud, cad_queue_journals_t *js) {
  op_t *o = ud;
  if (o->kind == 1) return cad_dlq_requeue(js, o->name, o->no, &o->moved, &o->first);
  return cad_dlq_purge(js, o->name, o->no, &o->moved);
}

static void op_done(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs, (void)n;
  op_t *o = ud;
  o->rc = status;
  o->done = true;
}

static bool op_finished(void *arg) { return ((op_t *)arg)->done; }

static void run_op(uv_loop_t *loop, cad_queue_t *q, op_t *o) {
  o->done = false;
  if (o->kind == 0) CHECK_INT(cad_queue_read_exec(q, snap_op, scan_op, o, op_done), 0);
  else CHECK_INT(cad_queue_exec(q, exec_op, o, op_done, o), 0);
  run_until(loop, op_finished, o, 5000);
  CHECK(o->done);
}

static fake_t *gf;
static int want;
static bool got_enough(void *arg) {
  (void)arg;
  return gf->got >= want;
}

static volatile bool stopped;
static void on_stopped(void *arg) {
  (void)arg;
  stopped = true;
}
static bool is_stopped(void *arg) {
  (void)arg;
  return stopped;
}

TEST(dead_letters_listed_requeued_and_purged_while_running) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "lab");
  fake_t f = {0};
  f.fail_first = 3;
  gf = &f;
  cad_dest_driver_t drv = {fake_deliver, &f, 1};
  cad_delivery_stats_t ctr = {0};
  cad_delivery_opts_t dopts = {5, 20, 2, true, &ctr};
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "lab", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  append(q, d, "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5\r");
  append(q, d, "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C2|P|2.5\r");
  append(q, d, "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C3|P|2.5\r");
  append(q, d, "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C4|P|2.5\r");
  want = 1;
  run_until(&loop, got_enough, NULL, 5000);
  CHECK_INT(f.got, 1); /* C4; C1..C3 dead */
  op_t ls = {.name = "lab", .kind = 0};
  for (int i = 0; i < 100 && ls.total < 3; i++) run_op(&loop, q, &ls);
  CHECK_INT(ls.rc, 0);
  CHECK_INT(ls.total, 3);
  REQUIRE(ls.n == 3);
  CHECK_STR(ls.items[0].control_id, "C1");
  CHECK_STR(ls.items[2].type, "ADT^A01");
  CHECK(strstr(ls.items[0].reason, "rejected by the test") != NULL);
  /* requeue one: the worker is told and delivers it */
  op_t rq = {.name = "lab", .kind = 1, .no = ls.items[1].no};
  run_op(&loop, q, &rq);
  CHECK_INT(rq.rc, 0);
  CHECK_INT(rq.moved, 1);
  CHECK(rq.first > 4);
  want = 2;
  run_until(&loop, got_enough, NULL, 5000);
  CHECK_INT(f.got, 2);
  CHECK(strstr(f.seen[1], "|C2|") != NULL);
  /* the same number again: gone */
  run_op(&loop, q, &rq);
  CHECK_INT(rq.rc, CAD_E_NOTFOUND);
  op_t nodest = {.name = "nosuch", .kind = 1};
  run_op(&loop, q, &nodest);
  CHECK_INT(nodest.rc, CAD_E_NOTFOUND);
  /* purge the rest */
  op_t pg = {.name = "lab", .kind = 2};
  run_op(&loop, q, &pg);
  CHECK_INT(pg.rc, 0);
  CHECK_INT(pg.moved, 2);
  run_op(&loop, q, &ls);
  CHECK_INT(ls.total, 0);
  /* delivery latency was observed for each delivered message */
  CHECK_INT(ctr.latency.count, 2);
  stopped = false;
  cad_delivery_stop(w, on_stopped, NULL);
  run_until(&loop, is_stopped, NULL, 5000);
  cad_queue_set_commit_hook(q, NULL, NULL);
  stopped = false;
  cad_queue_close(q, on_stopped, NULL);
  run_until(&loop, is_stopped, NULL, 5000);
  CHECK_INT(uv_loop_close(&loop), 0);
  /* durable: a fresh read-only look agrees (no dead letters left) */
  char dl[300];
  snprintf(dl, sizeof dl, "%s/deadletter", dir);
  cad_journal_t j, jd;
  char jdir[300];
  snprintf(jdir, sizeof jdir, "%s/journal", dir);
  REQUIRE(cad_journal_open(&j, jdir, 0, true) == 0);
  REQUIRE(cad_journal_open(&jd, dl, 0, true) == 0);
  cad_queue_journals_t js = {&j, &jd, jdir, dl, -1};
  size_t n;
  uint64_t total;
  cad_dlq_view_t v;
  CHECK_INT(cad_dlq_view(&js, "lab", &v), 0);
  CHECK_INT(cad_dlq_list(&js, &v, 0, 8, ls.items, &n, &total), 0);
  CHECK_INT(total, 0);
  uint64_t oldest;
  CHECK_INT(cad_dlq_oldest_waiting(&js, &v, &oldest), 0);
  CHECK_INT(oldest, 0);
  CHECK_INT(cad_dlq_view(&js, "nosuch", &v), CAD_E_NOTFOUND);
  cad_journal_close(&j);
  cad_journal_close(&jd);
}

TEST(a_paused_worker_holds_then_delivers) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "ehr");
  fake_t f = {0};
  gf = &f;
  cad_dest_driver_t drv = {fake_deliver, &f, 4};
  cad_delivery_stats_t ctr = {0};
  cad_delivery_opts_t dopts = {5, 20, 2, true, &ctr};
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "ehr", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  cad_delivery_pause(w, true);
  CHECK(cad_delivery_paused(w));
  for (int i = 0; i < 5; i++) append(q, d, "MSH|^~\\&|held");
  want = 1;
  run_until(&loop, got_enough, NULL, 300); /* nothing may arrive */
  CHECK_INT(f.got, 0);
  CHECK(ctr.head_time_ms > 0); /* the oldest waiting one is known while held */
  /* and from the journal, off the loop: the first of the five */
  op_t ow = {.name = "ehr", .kind = 3};
  ow.done = false;
  CHECK_INT(cad_queue_read_exec(q, snap_op, scan_oldest, &ow, op_done), 0);
  run_until(&loop, op_finished, &ow, 5000);
  CHECK_INT(ow.rc, 0);
  CHECK(ow.first > 0 && ow.first == ctr.head_time_ms);
  const cad_jdest_t *info = cad_queue_dest_info(q, (uint16_t)d);
  CHECK_INT(info->last_seq - info->done_seq, 5);
  cad_delivery_pause(w, false);
  want = 5;
  run_until(&loop, got_enough, NULL, 5000);
  CHECK_INT(f.got, 5);
  /* paused in the middle of traffic: what was handed over completes */
  cad_delivery_pause(w, true);
  for (int i = 0; i < 3; i++) append(q, d, "MSH|^~\\&|later");
  run_until(&loop, got_enough, NULL, 300);
  CHECK_INT(f.got, 5);
  stopped = false; /* stopping a held worker works */
  cad_delivery_stop(w, on_stopped, NULL);
  run_until(&loop, is_stopped, NULL, 5000);
  CHECK(stopped);
  cad_queue_set_commit_hook(q, NULL, NULL); /* the worker is gone */
  stopped = false;
  cad_queue_close(q, on_stopped, NULL);
  run_until(&loop, is_stopped, NULL, 5000);
  CHECK_INT(uv_loop_close(&loop), 0);
}

TEST_MAIN()
