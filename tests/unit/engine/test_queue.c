/* Unit tests of the durable queue and the delivery worker, on a real libuv
 * loop with a fake destination driver. */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cad_error.h"
#include "delivery.h"
#include "harness.h"
#include "io_sim.h"
#include "log.h"

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/cad_test_queue_%d", (int)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) abort();
  cad_log_setup(CAD_LOG_ERROR, CAD_LOG_KV, -1);
}

static void cleanup(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) abort();
}

/* Run the loop until *flag becomes true or ms pass. */
static bool run_until(uv_loop_t *loop, volatile bool *flag, uint64_t ms) {
  uint64_t end = uv_hrtime() + ms * 1000000ull;
  while (!*flag && uv_hrtime() < end) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  return *flag;
}

typedef struct {
  int acked;
  int failed;
  uint64_t last_seq;
  bool in_order;
} append_ctx_t;

static void on_append(void *ud, int status, const uint64_t *seqs, size_t n) {
  append_ctx_t *c = ud;
  if (status) {
    c->failed++;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (seqs[i] != c->last_seq + 1) c->in_order = false;
    c->last_seq = seqs[i];
  }
  c->acked++;
}

/* The fake destination. */
typedef struct {
  uv_loop_t *loop;
  int fail_first; /* fail this many attempts */
  cad_deliver_outcome_t fail_how;
  int calls;
  int got;
  char seen[256][32];
  bool always_fail;
} fake_t;

static int fake_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  fake_t *f = impl;
  f->calls++;
  if (f->always_fail || f->calls <= f->fail_first) {
    done(ctx, f->fail_how, "test failure");
    return 0;
  }
  if (f->got < 256) {
    size_t n = len < 31 ? len : 31;
    memcpy(f->seen[f->got], p, n);
    f->seen[f->got][n] = 0;
  }
  f->got++;
  done(ctx, CAD_DELIVER_OK, NULL);
  return 0;
}

static void hook(void *ud, uint16_t dest) {
  (void)dest;
  cad_delivery_notify(ud);
}

static volatile bool closed;
static void on_closed(void *arg) {
  (void)arg;
  closed = true;
}

static void close_all(uv_loop_t *loop, cad_queue_t *q, cad_delivery_t *w) {
  if (w) {
    closed = false;
    cad_delivery_stop(w, on_closed, NULL);
    run_until(loop, &closed, 5000);
  }
  closed = false;
  cad_queue_close(q, on_closed, NULL);
  run_until(loop, &closed, 5000);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void append_n(cad_queue_t *q, int dest, int from, int n, append_ctx_t *c) {
  for (int i = from; i < from + n; i++) {
    char msg[32];
    int l = snprintf(msg, sizeof msg, "MSH|^~\\&|m%d", i);
    cad_queue_item_t it = {(uint16_t)dest, msg, (size_t)l};
    CHECK_INT(cad_queue_append(q, &it, 1, on_append, c), 0);
  }
}

TEST(append_commits_in_batches_and_in_order) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  char report[256];
  REQUIRE(cad_queue_open(&loop, &o, &q, report, sizeof report) == 0);
  int d = cad_queue_dest(q, "ehr");
  CHECK_INT(d, 0);
  append_ctx_t c = {0, 0, 0, true};
  append_n(q, d, 1, 500, &c);
  volatile bool done = false;
  uint64_t end = uv_hrtime() + 10000000000ull;
  while (c.acked + c.failed < 500 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  (void)done;
  CHECK_INT(c.acked, 500);
  CHECK_INT(c.failed, 0);
  CHECK(c.in_order);
  CHECK_INT(c.last_seq, 500);
  cad_queue_stats_t st;
  cad_queue_get_stats(q, &st);
  CHECK_INT(st.appends, 500);
  CHECK(st.batches < 500); /* appends made in one loop turn share fdatasyncs */
  printf("  500 appends in %llu batches (max %llu per batch)\n", (unsigned long long)st.batches,
         (unsigned long long)st.max_batch_appends);
  const cad_jdest_t *info = cad_queue_dest_info(q, (uint16_t)d);
  REQUIRE(info != NULL);
  CHECK_INT(info->last_seq, 500);
  close_all(&loop, q, NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

TEST(delivery_in_order_and_survives_restart) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "ehr");
  append_ctx_t c = {0, 0, 0, true};
  append_n(q, d, 1, 50, &c);
  fake_t f;
  memset(&f, 0, sizeof f);
  cad_dest_driver_t drv = {fake_deliver, &f, 8};
  cad_delivery_opts_t dopts = {10, 100, 5, true, NULL};
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "ehr", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  uint64_t end = uv_hrtime() + 10000000000ull;
  while (f.got < 50 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(f.got, 50);
  bool order = true;
  for (int i = 0; i < 50 && i < f.got; i++) {
    char want[32];
    snprintf(want, sizeof want, "MSH|^~\\&|m%d", i + 1);
    if (strcmp(f.seen[i], want) != 0) order = false;
  }
  CHECK(order);
  /* Let the last DONE commit. */
  end = uv_hrtime() + 2000000000ull;
  while (cad_queue_dest_info(q, (uint16_t)d)->done_seq < 50 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(cad_queue_dest_info(q, (uint16_t)d)->done_seq, 50);
  close_all(&loop, q, w);

  /* Restart: nothing is delivered again; new messages continue the sequence. */
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  d = cad_queue_dest(q, "ehr");
  memset(&f, 0, sizeof f);
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "ehr", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  append_ctx_t c2 = {0, 0, 50, true};
  append_n(q, d, 51, 5, &c2);
  end = uv_hrtime() + 5000000000ull;
  while (f.got < 5 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(f.got, 5);
  CHECK_STR(f.seen[0], "MSH|^~\\&|m51");
  CHECK_INT(c2.last_seq, 55);
  close_all(&loop, q, w);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

TEST(retry_then_deliver) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "lis");
  append_ctx_t c = {0, 0, 0, true};
  append_n(q, d, 1, 3, &c);
  fake_t f;
  memset(&f, 0, sizeof f);
  f.fail_first = 3;
  f.fail_how = CAD_DELIVER_RETRY;
  cad_dest_driver_t drv = {fake_deliver, &f, 1};
  cad_delivery_opts_t dopts = {5, 20, 10, true, NULL};
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "lis", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (f.got < 3 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(f.got, 3);
  CHECK_STR(f.seen[0], "MSH|^~\\&|m1");
  cad_delivery_stats_t st;
  cad_delivery_get_stats(w, &st);
  CHECK_INT(st.retries, 3);
  CHECK_INT(st.dead, 0);
  close_all(&loop, q, w);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

TEST(permanent_failure_goes_to_dead_letter_and_the_queue_moves_on) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "pharmacy");
  append_ctx_t c = {0, 0, 0, true};
  append_n(q, d, 1, 3, &c);
  fake_t f;
  memset(&f, 0, sizeof f);
  f.fail_first = 1; /* the first message fails for good */
  f.fail_how = CAD_DELIVER_FAIL;
  cad_dest_driver_t drv = {fake_deliver, &f, 1};
  cad_delivery_opts_t dopts = {5, 20, 10, true, NULL};
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "pharmacy", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while ((f.got < 2 || cad_queue_dest_info(q, (uint16_t)d)->done_seq < 3) && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(f.got, 2);
  CHECK_STR(f.seen[0], "MSH|^~\\&|m2");
  cad_delivery_stats_t st;
  cad_delivery_get_stats(w, &st);
  CHECK_INT(st.dead, 1);
  CHECK_INT(cad_queue_dest_info(q, (uint16_t)d)->done_seq, 3);
  close_all(&loop, q, w);
  CHECK_INT(uv_loop_close(&loop), 0);
  /* The dead letter is durable, with its reason and bytes. */
  char dl[300];
  snprintf(dl, sizeof dl, "%s/deadletter", dir);
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dl, 0, true) == 0);
  int id = cad_journal_dest(&j, "pharmacy", false);
  CHECK(id >= 0);
  CHECK_INT(j.dests[id].last_seq, 1);
  cad_jreader_t r;
  REQUIRE(cad_jreader_init(&r, dl) == 0);
  cad_jpos_t pos = cad_journal_begin(&j), jend = cad_journal_end(&j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  REQUIRE(cad_jreader_next(&r, &pos, jend, id, CAD_JREC_MSG, &rec) == 1);
  const unsigned char *pl = (const unsigned char *)rec.payload.data;
  size_t rl = (size_t)(pl[0] | (pl[1] << 8));
  CHECK(rl > 0 && memmem(pl + 2, rl, "test failure", 12) != NULL);
  CHECK_STRN(pl + 2 + rl + 8, rec.payload.len - 2 - rl - 8, "MSH|^~\\&|m1");
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  cad_journal_close(&j);
  cleanup();
}

TEST(block_policy_holds_the_queue_until_the_destination_recovers) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "ehr");
  append_ctx_t c = {0, 0, 0, true};
  append_n(q, d, 1, 2, &c);
  fake_t f;
  memset(&f, 0, sizeof f);
  f.fail_first = 5;
  f.fail_how = CAD_DELIVER_RETRY;
  cad_dest_driver_t drv = {fake_deliver, &f, 1};
  cad_delivery_opts_t dopts = {2, 10, 2, false, NULL}; /* block after 2 attempts */
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "ehr", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (f.got < 2 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(f.got, 2);
  CHECK_STR(f.seen[0], "MSH|^~\\&|m1"); /* nothing overtook the blocked message */
  CHECK_STR(f.seen[1], "MSH|^~\\&|m2");
  cad_delivery_stats_t st;
  cad_delivery_get_stats(w, &st);
  CHECK_INT(st.dead, 0);
  CHECK_INT(st.blocked, 0); /* unblocked once delivered */
  close_all(&loop, q, w);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

TEST(backlog_limit_refuses_appends) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir, .max_backlog = 10};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "ehr");
  append_ctx_t c = {0, 0, 0, true};
  int refused = 0;
  for (int i = 0; i < 15; i++) {
    cad_queue_item_t it = {(uint16_t)d, "MSH|x", 5};
    int rc = cad_queue_append(q, &it, 1, on_append, &c);
    if (rc == CAD_E_FULL) refused++;
    else CHECK_INT(rc, 0);
  }
  CHECK_INT(refused, 5);
  close_all(&loop, q, NULL);
  CHECK_INT(c.acked, 10);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

/* An asynchronous driver with a window: completions come later, in order.
 * Message "m7" fails once when it completes, and what was handed over after
 * it fails too (a destination that broke, as a file batch fails together);
 * "m12" is refused once at hand over (deliver returns an error). */
typedef struct {
  uv_loop_t *loop;
  uv_timer_t timer;
  cad_deliver_done_cb done;
  void *ctx;
  char pending[64][32];
  int npending;
  int max_in_flight;
  char got[256][32];
  int ngot;
  bool failed7, refused12, broken;
} afake_t;

static void afake_tick(uv_timer_t *t) {
  afake_t *f = t->data;
  if (f->npending == 0) return;
  char m[32];
  memcpy(m, f->pending[0], sizeof m);
  memmove(f->pending[0], f->pending[1], (size_t)(f->npending - 1) * sizeof f->pending[0]);
  f->npending--;
  if ((strcmp(m, "MSH|^~\\&|m7") == 0 && !f->failed7) || f->broken) {
    f->failed7 = true;
    f->broken = f->npending > 0; /* the rest of this window fails too */
    f->done(f->ctx, CAD_DELIVER_RETRY, "m7 fails once");
  } else {
    if (f->ngot < 256) memcpy(f->got[f->ngot++], m, sizeof m);
    f->done(f->ctx, CAD_DELIVER_OK, NULL);
  }
}

static int afake_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                         cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  afake_t *f = impl;
  char m[32];
  size_t n = len < 31 ? len : 31;
  memcpy(m, p, n);
  m[n] = 0;
  if (strcmp(m, "MSH|^~\\&|m12") == 0 && !f->refused12) {
    f->refused12 = true;
    return CAD_E_FULL;
  }
  if (f->npending >= 64) return CAD_E_FULL;
  if (f->npending == 0) f->broken = false; /* a retry after the window drained */
  memcpy(f->pending[f->npending++], m, sizeof m);
  if (f->npending > f->max_in_flight) f->max_in_flight = f->npending;
  f->done = done;
  f->ctx = ctx;
  return 0;
}

TEST(window_with_failures_keeps_order) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int d = cad_queue_dest(q, "files");
  append_ctx_t c = {0, 0, 0, true};
  append_n(q, d, 1, 20, &c);
  afake_t f;
  memset(&f, 0, sizeof f);
  uv_timer_init(&loop, &f.timer);
  f.timer.data = &f;
  uv_timer_start(&f.timer, afake_tick, 1, 1);
  cad_dest_driver_t drv = {afake_deliver, &f, 4};
  cad_delivery_opts_t dopts = {5, 20, 10, true, NULL};
  cad_delivery_t *w;
  REQUIRE(cad_delivery_start(&loop, q, (uint16_t)d, "files", &drv, &dopts, &w) == 0);
  cad_queue_set_commit_hook(q, hook, w);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (cad_queue_dest_info(q, (uint16_t)d)->done_seq < 20 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(100);
  }
  CHECK_INT(cad_queue_dest_info(q, (uint16_t)d)->done_seq, 20);
  CHECK(f.failed7 && f.refused12);
  CHECK(f.max_in_flight > 1); /* the window was used */
  /* Exactly 1..20, in order: the failed and refused ones were retried
   * before anything after them. */
  CHECK_INT(f.ngot, 20);
  for (int i = 0; i < f.ngot; i++) {
    char want[32];
    snprintf(want, sizeof want, "MSH|^~\\&|m%d", i + 1);
    CHECK_STR(f.got[i], want);
  }
  cad_delivery_stats_t st;
  cad_delivery_get_stats(w, &st);
  CHECK_INT(st.dead, 0);
  CHECK(st.retries >= 2);
  uv_timer_stop(&f.timer);
  uv_close((uv_handle_t *)&f.timer, NULL);
  close_all(&loop, q, w);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

/* ---- faults through the I/O seam (io_sim.h) ------------------------------- */

/* Hundreds of opens and syncs: in memory when it can (what is tested is
 * the code's answer to a failure, not the disk). */
static void fresh_fast_dir(void) {
  fresh_dir();
  if (access("/dev/shm", W_OK) == 0)
    snprintf(dir, sizeof dir, "/dev/shm/cad_test_queue_%d", (int)getpid());
}

typedef struct one_wait {
  bool done;
  int status;
  uint64_t seq;
} one_wait_t;

static void one_done(void *ud, int status, const uint64_t *seqs, size_t n) {
  one_wait_t *w = ud;
  w->status = status;
  w->seq = status == 0 && n ? seqs[0] : 0;
  w->done = true;
}

/* Append message `i` for dest d and wait: its status (0 = committed). */
static int append_wait(uv_loop_t *loop, cad_queue_t *q, int d, int i, uint64_t *seq) {
  char msg[1100];
  int l = snprintf(msg, sizeof msg, "MSH|^~\\&|fault|%d|", i);
  memset(msg + l, 'x', 1000); /* 8 KiB segments roll every 7 messages */
  cad_queue_item_t it = {(uint16_t)d, msg, (size_t)l + 1000};
  one_wait_t w = {0};
  int rc = cad_queue_append(q, &it, 1, one_done, &w);
  if (rc) return rc;
  run_until(loop, (volatile bool *)&w.done, 10000);
  if (seq) *seq = w.seq;
  return w.done ? w.status : CAD_E_STATE;
}

/* Reopen (system I/O) and check that exactly messages `acked[0..n)` are in
 * dest "ehr", in order, with their bytes. */
static void check_committed(const int *acked, int n) {
  char jdir[300];
  snprintf(jdir, sizeof jdir, "%s/journal", dir);
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, jdir, 0, false) == 0);
  CHECK_INT(j.stats.corrupt_records, 0);
  int d = cad_journal_dest(&j, "ehr", false);
  REQUIRE(d >= 0);
  cad_jreader_t r;
  REQUIRE(cad_jreader_init(&r, jdir) == 0);
  cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int k = 0;
  while (cad_jreader_next(&r, &pos, end, d, CAD_JREC_MSG, &rec) == 1) {
    char want[64];
    int wl = snprintf(want, sizeof want, "MSH|^~\\&|fault|%d|", k < n ? acked[k] : -1);
    CHECK(rec.payload.len == (size_t)wl + 1000 && memcmp(rec.payload.data, want, (size_t)wl) == 0);
    CHECK_INT(rec.seq, (uint64_t)(k + 1));
    k++;
  }
  CHECK_INT(k, n);
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  cad_journal_close(&j);
}

TEST(a_failed_write_or_sync_is_reported_and_the_queue_recovers) {
  static const struct {
    int ops, err;
    bool sticky;
  } faults[] = {
      {IOF_SYNC, -EIO, false},       {IOF_SYNC, -ENOSPC, false},
      {IOF_SYNC, -EDQUOT, false},    {IOF_WRITE, -EIO, false},
      {IOF_WRITE, -ENOSPC, false},   {IOF_WRITE, -EDQUOT, false},
      {IOF_WRITE, IOF_SHORT, false}, {IOF_WRITE | IOF_SYNC, -ENOSPC, true},
      {IOF_SYNC, -EIO, true},
  };
  for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
    /* The nth write or sync from 1 to 16 fails: that hits the batch write,
     * its sync, the zero-fill ahead, a segment roll (1 KiB messages, 8 KiB
     * segments), the segment's header, its DEST records, its directory. */
    for (long nth = 1; nth <= 16; nth++) {
      fresh_fast_dir();
      io_fault_t *fi = io_fault_new();
      uv_loop_t loop;
      uv_loop_init(&loop);
      cad_queue_opts_t o = {.data_dir = dir, .segment_bytes = 8192, .io = io_fault_io(fi)};
      cad_queue_t *q = NULL;
      char report[600];
      REQUIRE(cad_queue_open(&loop, &o, &q, report, sizeof report) == 0);
      int d = cad_queue_dest(q, "ehr");
      REQUIRE(d >= 0);
      int acked[64], na = 0, failed = 0;
      for (int i = 0; i < 3; i++)
        if (append_wait(&loop, q, d, i, NULL) == 0) acked[na++] = i;
      CHECK_INT(na, 3);
      io_fault_arm(fi, faults[f].ops, nth, faults[f].err, faults[f].sticky);
      for (int i = 3; i < 20; i++) {
        long before = io_fault_injected(fi);
        int rc = append_wait(&loop, q, d, i, NULL);
        if (rc == 0) acked[na++] = i;
        else failed++;
        /* A sync that failed while this append was being written: the
         * append is reported failed (the engine NAKs it), never ACKed. */
        if (faults[f].ops == IOF_SYNC && io_fault_injected(fi) > before) CHECK(rc < 0);
        if (i == 12) io_fault_clear(fi); /* the fault goes away */
      }
      /* Once the fault is gone the queue works: the last ones commit. */
      CHECK(na >= 3 + 7);
      CHECK(acked[na - 1] == 19);
      if (faults[f].err == IOF_SHORT) CHECK_INT(failed, 0);
      if (faults[f].ops & IOF_SYNC) CHECK(io_fault_injected(fi) == 0 || failed > 0);
      closed = false;
      cad_queue_close(q, on_closed, NULL);
      run_until(&loop, &closed, 5000);
      uv_run(&loop, UV_RUN_NOWAIT);
      CHECK_INT(uv_loop_close(&loop), 0);
      io_fault_free(fi);
      /* Everything reported committed is there, nothing else, in order. */
      check_committed(acked, na);
      cleanup();
    }
  }
}

TEST(a_failed_dead_letter_or_rename_loses_nothing) {
  fresh_fast_dir();
  io_fault_t *fi = io_fault_new();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_opts_t o = {.data_dir = dir, .io = io_fault_io(fi)};
  cad_queue_t *q = NULL;
  char report[600];
  REQUIRE(cad_queue_open(&loop, &o, &q, report, sizeof report) == 0);
  int d = cad_queue_dest(q, "ehr");
  REQUIRE(d >= 0);
  int acked[4] = {0, 1, 2, 3};
  for (int i = 0; i < 4; i++) CHECK_INT(append_wait(&loop, q, d, i, NULL), 0);
  /* The dead-letter journal's sync fails: the DEAD mark is reported failed
   * and the message stays unfinished. */
  io_fault_arm(fi, IOF_SYNC, 1, -EIO, false);
  one_wait_t w = {0};
  CHECK_INT(cad_queue_mark(q, (uint16_t)d, CAD_JREC_DEAD, 1, "test", "MSH|^~\\&|fault|0|", 17,
                           one_done, &w),
            0);
  run_until(&loop, (volatile bool *)&w.done, 5000);
  CHECK(w.done && w.status < 0);
  CHECK_INT(cad_queue_dest_info(q, (uint16_t)d)->done_seq, 0);
  /* The clean-shutdown marker's rename fails: the next open is a crash
   * recovery, and nothing is lost. */
  io_fault_arm(fi, IOF_RENAME, 1, -EIO, false);
  closed = false;
  cad_queue_close(q, on_closed, NULL);
  run_until(&loop, &closed, 5000);
  CHECK_INT(io_fault_injected(fi), 2);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_INT(uv_loop_close(&loop), 0);
  io_fault_free(fi);
  check_committed(acked, 4);
  cleanup();
}

TEST(every_destination_is_registered_for_dead_letters_at_start) {
  /* cad_queue_dest names the destination in the dead-letter journal too, so
   * the first dead letter registers nothing on the commit path. */
  fresh_fast_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_opts_t o = {.data_dir = dir};
  cad_queue_t *q = NULL;
  char report[600];
  REQUIRE(cad_queue_open(&loop, &o, &q, report, sizeof report) == 0);
  REQUIRE(cad_queue_dest(q, "ehr") >= 0);
  REQUIRE(cad_queue_dest(q, "channel:adt") >= 0);
  char dlq[300];
  snprintf(dlq, sizeof dlq, "%s/deadletter", dir);
  cad_journal_t j;
  REQUIRE(cad_journal_open(&j, dlq, 0, true) == 0);
  CHECK(cad_journal_dest(&j, "ehr", false) >= 0);
  CHECK(cad_journal_dest(&j, "channel:adt", false) >= 0);
  cad_journal_close(&j);
  closed = false;
  cad_queue_close(q, on_closed, NULL);
  run_until(&loop, &closed, 5000);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

TEST_MAIN()
