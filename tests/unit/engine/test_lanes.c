/* Unit tests of lanes: order_by keys and lane names (lanes.h), the lane
 * configuration keys, and delivery workers over lane FIFOs (delivery.h) on
 * a real queue and loop with a fake driver. */
#include "lanes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cad_error.h"
#include "config.h"
#include "delivery.h"
#include "harness.h"
#include "log.h"
#include "queue.h"

/* ---- keys ------------------------------------------------------------- */

static const char MSG[] =
    "MSH|^~\\&|LAB|H|EHR|H|20261205||ORU^R01|C1|P|2.5\r"
    "PID|1||12345^^^HOSP^MR~999^^^SSN||DOE^JANE\r";

static size_t key_of(const char *order_by, const char *msg, char *buf, size_t cap) {
  cad_lanekey_t *k = NULL;
  char err[160];
  if (cad_lanekey_compile(order_by, &k, err, sizeof err, NULL) != 0) return (size_t)-1;
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  cad_hl7_msg_t m;
  size_t n = (size_t)-2;
  if (cad_hl7_parse(&m, msg, strlen(msg), &a, NULL, NULL) == 0)
    n = cad_lanekey_key(k, &m, buf, cap);
  cad_arena_free(&a);
  cad_lanekey_free(k);
  return n;
}

TEST(key_from_one_path_and_from_a_template) {
  char buf[64];
  size_t n = key_of("PID-3.1", MSG, buf, sizeof buf);
  CHECK_INT(n, 5);
  CHECK(memcmp(buf, "12345", 5) == 0);
  n = key_of("${PID-3.4}/${PID-3.1}", MSG, buf, sizeof buf);
  CHECK_INT(n, 10);
  CHECK(memcmp(buf, "HOSP/12345", 10) == 0);
  n = key_of("x${PID-3[2].1}y", MSG, buf, sizeof buf);
  CHECK_INT(n, 5);
  CHECK(memcmp(buf, "x999y", 5) == 0);
  /* A missing field is empty; the key is cut at the buffer. */
  CHECK_INT(key_of("ZZZ-1", MSG, buf, sizeof buf), 0);
  CHECK_INT(key_of("${PID-5}${PID-5}", MSG, buf, 12), 12);
}

TEST(bad_keys_are_refused_with_a_position) {
  const char *bad[] = {"", "PI", "PID-x", "${PID-3", "${OBX[*]-5}", "a${}b", "PID-3[*]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cad_lanekey_t *k = (cad_lanekey_t *)1;
    char err[160] = "";
    size_t at = 999;
    CHECK_INT(cad_lanekey_compile(bad[i], &k, err, sizeof err, &at), CAD_E_INVAL);
    CHECK(k == NULL);
    CHECK(err[0] != 0);
    CHECK(at <= strlen(bad[i]));
  }
  /* 17 paths is one too many. */
  char many[400] = "";
  for (int i = 0; i < 17; i++) strcat(many, "${PID-3}");
  cad_lanekey_t *k = NULL;
  char err[160];
  CHECK_INT(cad_lanekey_compile(many, &k, err, sizeof err, NULL), CAD_E_INVAL);
}

TEST(the_hash_is_fixed_and_spreads_keys) {
  /* FNV-1a 64 is part of the queue's contract (lanes.h): these values must
   * never change, or a key's messages queued before an upgrade and after it
   * could be in different lanes. */
  CHECK_INT(cad_lanekey_hash_lane("", 0, 1000003), (unsigned)(0xcbf29ce484222325ull % 1000003));
  CHECK_INT(cad_lanekey_hash_lane("a", 1, 1000003), (unsigned)(0xaf63dc4c8601ec8cull % 1000003));
  CHECK_INT(cad_lanekey_hash_lane("foobar", 6, 1000003),
            (unsigned)(0x85944171f73967e8ull % 1000003));
  CHECK_INT(cad_lanekey_hash_lane("anything", 8, 1), 0);
  int per[8] = {0};
  for (int i = 0; i < 8000; i++) {
    char key[16];
    int n = snprintf(key, sizeof key, "%d", 100000 + i);
    per[cad_lanekey_hash_lane(key, (size_t)n, 8)]++;
  }
  for (int l = 0; l < 8; l++) CHECK(per[l] > 800 && per[l] < 1200);
  /* The same message, the same lane; an unparsable one has the empty key. */
  cad_lanekey_t *k = NULL;
  char err[160];
  REQUIRE(cad_lanekey_compile("PID-3.1", &k, err, sizeof err, NULL) == 0);
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  unsigned l1 = cad_lanekey_lane(k, MSG, strlen(MSG), 16, &a);
  cad_arena_reset(&a);
  CHECK_INT(cad_lanekey_lane(k, MSG, strlen(MSG), 16, &a), l1);
  CHECK_INT(l1, cad_lanekey_hash_lane("12345", 5, 16));
  cad_arena_reset(&a);
  CHECK_INT(cad_lanekey_lane(k, "garbage", 7, 16, &a), cad_lanekey_hash_lane("", 0, 16));
  cad_arena_free(&a);
  cad_lanekey_free(k);
}

TEST(lane_queue_names) {
  char b[80];
  cad_lanes_qname(b, sizeof b, "ehr", 0);
  CHECK_STR(b, "ehr");
  cad_lanes_qname(b, sizeof b, "ehr", 12);
  CHECK_STR(b, "ehr#12");
  CHECK_INT(cad_lanes_of("ehr", "ehr"), 0);
  CHECK_INT(cad_lanes_of("ehr#12", "ehr"), 12);
  CHECK_INT(cad_lanes_of("ehr#63", "ehr"), 63);
  CHECK_INT(cad_lanes_of("ehr#64", "ehr"), -1);
  CHECK_INT(cad_lanes_of("ehr#0", "ehr"), -1);
  CHECK_INT(cad_lanes_of("ehr#1x", "ehr"), -1);
  CHECK_INT(cad_lanes_of("ehr2", "ehr"), -1);
  CHECK_INT(cad_lanes_of("eh", "ehr"), -1);
  CHECK_INT(cad_lanes_of("ehr#", "ehr"), -1);
}

/* ---- configuration ---------------------------------------------------- */

static char *errors_of(const char *yaml) {
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc = cad_config_load_mem("t.yaml", yaml, strlen(yaml), CAD_CONFIG_NO_INCLUDE, &c, &err);
  if (rc == 0 && c) {
    char buf[64];
    snprintf(buf, sizeof buf, "lanes=%u order_by=%s", (unsigned)c->dests[0].lanes,
             c->dests[0].order_by ? c->dests[0].order_by : "-");
    free(err);
    err = strdup(buf);
  }
  cad_config_free(c);
  if (!err) err = strdup("(no error text)");
  return err;
}

#define CHAN "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: ehr\n"
#define CHECK_CONF(dest, want)                                 \
  do {                                                         \
    char *e_ = errors_of(                                      \
        "destinations:\n  ehr:\n    type: mllp\n    host: h\n" \
        "    port: 1\n" dest CHAN);                            \
    CHECK_STR(e_, want);                                       \
    free(e_);                                                  \
  } while (0)

TEST(config_keys) {
  CHECK_CONF("", "lanes=1 order_by=-");
  CHECK_CONF("    lanes: 8\n    order_by: PID-3.1\n", "lanes=8 order_by=PID-3.1");
  CHECK_CONF("    lanes: 4\n    order_by: \"${PID-3.1}^${PID-3.4}\"\n",
             "lanes=4 order_by=${PID-3.1}^${PID-3.4}");
  CHECK_CONF("    lanes: 65\n    order_by: PID-3.1\n",
             "t.yaml:6:12: lanes: must be from 1 to 64, got 65\n");
  CHECK_CONF("    lanes: 8\n",
             "t.yaml:6:12: in destination 'ehr': lanes: 8 needs order_by (the key whose messages "
             "stay in order, like PID-3.1); without it the destination is one FIFO\n");
  char *e = errors_of(
      "destinations:\n  ehr:\n    type: mllp\n    host: h\n    port: 1\n"
      "    lanes: 2\n    order_by: PID-x\n" CHAN);
  CHECK(strstr(e, "t.yaml:7:15: order_by: not an HL7 path like PID-3.1") != NULL);
  free(e);
  e = errors_of(
      "destinations:\n  ehr:\n    type: file\n    append: out.hl7\n"
      "    lanes: 2\n    order_by: PID-3\n" CHAN);
  CHECK(strstr(e, "t.yaml:5:12: in destination 'ehr': lanes need one file per message") != NULL);
  free(e);
}

/* ---- delivery over lanes ---------------------------------------------- */

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/cad_test_lanes_%d", (int)getpid());
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

static void on_append(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  if (status == 0) (*(int *)ud)++;
}

/* One driver impl serving two lanes (cad_deliver_lane_fn): lane 0 fails
 * while `fail0` is set; every delivery is recorded per lane. */
typedef struct {
  bool fail0;
  int got[2];
  int calls[2];
  char seen[2][64][16];
  int wrong_lane;
} two_t;

static int two_deliver(void *impl, unsigned lane, const char *p, size_t len, uint64_t seq,
                       cad_deliver_done_cb done, void *ctx) {
  (void)seq;
  two_t *t = impl;
  if (lane > 1) {
    t->wrong_lane++;
    return CAD_E_INVAL;
  }
  t->calls[lane]++;
  if (lane == 0 && t->fail0) {
    done(ctx, CAD_DELIVER_RETRY, "test failure");
    return 0;
  }
  if (t->got[lane] < 64) {
    size_t n = len < 15 ? len : 15;
    memcpy(t->seen[lane][t->got[lane]], p, n);
    t->seen[lane][t->got[lane]][n] = 0;
  }
  t->got[lane]++;
  done(ctx, CAD_DELIVER_OK, NULL);
  return 0;
}

static int not_called(void *impl, const char *p, size_t len, uint64_t seq, cad_deliver_done_cb done,
                      void *ctx) {
  (void)impl, (void)p, (void)len, (void)seq, (void)done, (void)ctx;
  abort();
}

static cad_delivery_t *workers[2];
static void hook(void *ud, uint16_t dest) {
  (void)ud;
  for (int i = 0; i < 2; i++)
    if (workers[i]) cad_delivery_notify(workers[i]);
  (void)dest;
}

static volatile int nclosed;
static void on_closed(void *arg) {
  (void)arg;
  nclosed++;
}

static void spin(uv_loop_t *loop, bool (*done)(void *), void *arg, uint64_t ms) {
  uint64_t end = uv_hrtime() + ms * 1000000ull;
  while (!done(arg) && uv_hrtime() < end) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(200);
  }
}

static bool lane1_done(void *arg) { return ((two_t *)arg)->got[1] >= 20; }
static bool lane0_done(void *arg) { return ((two_t *)arg)->got[0] >= 20; }

TEST(a_lane_in_retry_or_blocked_holds_only_itself) {
  fresh_dir();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q;
  cad_queue_opts_t o = {.data_dir = dir};
  REQUIRE(cad_queue_open(&loop, &o, &q, NULL, 0) == 0);
  int q0 = cad_queue_dest(q, "ehr"), q1 = cad_queue_dest(q, "ehr#1");
  REQUIRE(q0 >= 0 && q1 >= 0);
  int acked = 0;
  for (int i = 1; i <= 20; i++)
    for (int l = 0; l < 2; l++) {
      char m[16];
      int n = snprintf(m, sizeof m, "L%d-%02d", l, i);
      cad_queue_item_t it = {(uint16_t)(l ? q1 : q0), m, (size_t)n};
      CHECK_INT(cad_queue_append(q, &it, 1, on_append, &acked), 0);
    }
  two_t t;
  memset(&t, 0, sizeof t);
  t.fail0 = true;
  cad_dest_driver_t drv = {not_called, &t, 1};
  cad_delivery_opts_t dopts = {2, 5, 2, false, NULL}; /* block after 2 attempts */
  cad_delivery_stats_t st[2];
  memset(st, 0, sizeof st);
  for (int l = 0; l < 2; l++) {
    dopts.counters = &st[l];
    REQUIRE(cad_delivery_start(&loop, q, (uint16_t)(l ? q1 : q0), l ? "ehr#1" : "ehr", &drv, &dopts,
                               &workers[l]) == 0);
    CHECK_INT(cad_delivery_set_lane(workers[l], (unsigned)l, 2, two_deliver), 0);
    CHECK_INT(cad_delivery_lane(workers[l]), (unsigned)l);
  }
  CHECK_INT(cad_delivery_set_lane(workers[0], 2, 2, two_deliver), CAD_E_INVAL);
  cad_queue_set_commit_hook(q, hook, NULL);
  spin(&loop, lane1_done, &t, 5000);
  /* Lane 1 delivered everything, in order, while lane 0 was failing. */
  CHECK_INT(t.got[1], 20);
  CHECK_STR(t.seen[1][0], "L1-01");
  CHECK_STR(t.seen[1][19], "L1-20");
  CHECK_INT(t.got[0], 0);
  /* Lane 0 goes past its attempts: blocked, and only it. */
  uint64_t end = uv_hrtime() + 2000000000ull;
  while (!st[0].blocked && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  CHECK_INT(st[0].blocked, 1);
  CHECK_INT(st[1].blocked, 0);
  CHECK_INT(st[1].delivered, 20);
  /* The receiver recovers: lane 0 delivers, in order, nothing lost. */
  t.fail0 = false;
  spin(&loop, lane0_done, &t, 5000);
  CHECK_INT(t.got[0], 20);
  CHECK_STR(t.seen[0][0], "L0-01");
  CHECK_STR(t.seen[0][19], "L0-20");
  CHECK_INT(st[0].blocked, 0);
  CHECK_INT(st[0].delivered, 20);
  CHECK_INT(t.wrong_lane, 0);
  nclosed = 0;
  for (int l = 0; l < 2; l++) cad_delivery_stop(workers[l], on_closed, NULL);
  end = uv_hrtime() + 5000000000ull;
  while (nclosed < 2 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  workers[0] = workers[1] = NULL;
  /* Both lanes' progress is in the journal. */
  const cad_jdest_t *j0 = cad_queue_dest_info(q, (uint16_t)q0);
  const cad_jdest_t *j1 = cad_queue_dest_info(q, (uint16_t)q1);
  REQUIRE(j0 && j1);
  CHECK_INT(j0->done_seq, 20);
  CHECK_INT(j1->done_seq, 20);
  bool qclosed = false;
  nclosed = 0;
  cad_queue_close(q, on_closed, NULL);
  end = uv_hrtime() + 5000000000ull;
  while (nclosed < 1 && uv_hrtime() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  (void)qclosed;
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_INT(uv_loop_close(&loop), 0);
  cleanup();
}

TEST_MAIN()
