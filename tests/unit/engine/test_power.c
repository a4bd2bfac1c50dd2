/* test_power.c - power cuts at >= 1,000 points of a mixed workload on the
 * durable queue (engine/store/queue.h), through the power-cut I/O table
 * (io_sim.h).
 *
 * The workload, on the loop thread, one operation at a time: receive
 * (append 1 to 3 records, wait for the commit), deliver (DONE, lazily
 * synced), dead letter (DEAD, into the dead-letter journal), requeue (a
 * dead letter appended again), purge, close and reopen (clean shutdown and
 * recovery), with 8 KiB segments (frequent rolls) and retention on every
 * commit (finished segments deleted).  Before a changing file operation,
 * at random (one in three, until enough), the test cuts the power: it
 * writes what the disk would hold (only what was synced; every other cut
 * with the last unsynced write torn at a random byte) to a fresh directory
 * and restarts the store there: cad_queue_open (journal and dead-letter
 * recovery), a clean close, and a read-only open to read it all back.
 *
 * At every cut: every message whose append was reported committed (would
 * have been ACKed) is there with its bytes, or counts as finished only if
 * the workload had issued a DONE/DEAD/PURGE covering it; every DEAD whose
 * mark was reported committed has its message in the dead letters; no
 * sequence appears twice; the store opens without error and its recovery
 * reports no damage (a power cut may tear, never corrupt).  Prints
 *   power-loss: N cut points, M ACKed lost, R repairs
 * and fails unless N >= 1000, M == 0 and R == 0. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cad_error.h"
#include "harness.h"
#include "io_sim.h"
#include "journal.h"
#include "log.h"
#include "queue.h"

#define TARGET_CUTS 1100
#define MAX_STEPS 20000
#define NDEST 2
#define MAX_MSGS 8192
#define SEGMENT_BYTES 8192

static const char *const dest_names[NDEST] = {"ehr", "lab"};

typedef struct msg {
  char *body;
  size_t len;
  bool dead_acked; /* its DEAD mark was reported committed */
} msg_t;

typedef struct world {
  pthread_mutex_t mu;              /* guards everything below (loop thread and cut hook) */
  msg_t msgs[NDEST][MAX_MSGS + 1]; /* by sequence: ACKed messages */
  uint64_t acked_max[NDEST];       /* highest ACKed sequence */
  uint64_t finish_issued[NDEST];   /* every seq <= this had a finishing mark issued */
  unsigned rng;
  long cuts, lost, repairs, dups;
  char root[256], data[300], cut[256];
  char first_problem[512];
} world_t;

static world_t W;

static unsigned rnd(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (*s >> 8) & 0xffffff;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...) {
  static int shown;
  if (shown++ >= 8) return; /* the first few, with the cut they happened at */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(W.first_problem, sizeof W.first_problem, fmt, ap);
  va_end(ap);
  fprintf(stderr, "  cut %ld: %s\n", W.cuts, W.first_problem);
}

/* ---- checking one cut ----------------------------------------------------- */

typedef struct got {
  char *body[MAX_MSGS + 1];
  size_t len[MAX_MSGS + 1];
} got_t;

static got_t got_main[NDEST], got_dead[NDEST];

static void got_free(got_t *g) {
  for (size_t i = 0; i <= MAX_MSGS; i++) free(g->body[i]);
  memset(g, 0, sizeof *g);
}

static void got_put(got_t *g, uint64_t seq, const char *p, size_t n) {
  if (seq == 0 || seq > MAX_MSGS) return;
  if (g->body[seq]) {
    W.dups++;
    problem("sequence %llu read twice", (unsigned long long)seq);
    return;
  }
  g->body[seq] = malloc(n ? n : 1);
  if (!g->body[seq]) abort();
  memcpy(g->body[seq], p, n);
  g->len[seq] = n;
}

/* Read every MSG of a journal directory into got[dest by name]. */
static int read_journal(const char *dir, got_t *got, bool dead, uint64_t *done) {
  cad_journal_t j;
  int rc = cad_journal_open(&j, dir, 0, true);
  if (rc) return rc;
  int ids[NDEST];
  for (int d = 0; d < NDEST; d++) {
    ids[d] = cad_journal_dest(&j, dest_names[d], false);
    if (done) done[d] = ids[d] >= 0 ? j.dests[ids[d]].done_seq : 0;
  }
  cad_jreader_t r;
  if (cad_jreader_init(&r, dir)) abort();
  cad_jpos_t pos = cad_journal_begin(&j), end = cad_journal_end(&j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  while ((rc = cad_jreader_next(&r, &pos, end, -1, CAD_JREC_MSG, &rec)) == 1) {
    for (int d = 0; d < NDEST; d++) {
      if (ids[d] != rec.dest) continue;
      if (!dead) {
        got_put(&got[d], rec.seq, rec.payload.data, rec.payload.len);
      } else if (rec.payload.len >= 10) {
        /* [u16 reason length][reason][u64 original seq][message] */
        const unsigned char *b = (const unsigned char *)rec.payload.data;
        size_t rl = b[0] | (size_t)b[1] << 8;
        if (2 + rl + 8 > rec.payload.len) continue;
        uint64_t seq = 0;
        for (int i = 7; i >= 0; i--) seq = seq << 8 | b[2 + rl + i];
        if (seq <= MAX_MSGS && !got[d].body[seq])
          got_put(&got[d], seq, rec.payload.data + 2 + rl + 8, rec.payload.len - 2 - rl - 8);
      }
    }
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  cad_journal_close(&j);
  return rc < 0 ? rc : 0;
}

static volatile bool q2_closed;
static void on_q2_closed(void *arg) {
  (void)arg;
  q2_closed = true;
}

/* Restart the store on the cut directory: 0, or count a repair. */
static bool restart_store(const char *data) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_queue_t *q = NULL;
  char report[1200];
  cad_queue_opts_t o = {.data_dir = data, .segment_bytes = SEGMENT_BYTES};
  int rc = cad_queue_open(&loop, &o, &q, report, sizeof report);
  bool ok = rc == 0 && !strstr(report, "CORRUPT");
  if (!ok) problem("restart: %s", rc ? cad_strerror(rc) : report);
  if (rc == 0) {
    q2_closed = false;
    cad_queue_close(q, on_q2_closed, NULL);
    while (!q2_closed) uv_run(&loop, UV_RUN_ONCE);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_loop_close(&loop);
  return ok;
}

/* Compare what came back with what was ACKed (W.mu held). */
static void compare(const uint64_t *done) {
  for (int d = 0; d < NDEST; d++) {
    for (uint64_t s = 1; s <= W.acked_max[d]; s++) {
      const msg_t *m = &W.msgs[d][s];
      if (!m->body) continue;
      if (s <= done[d]) {
        if (s > W.finish_issued[d]) {
          W.lost++;
          problem("%s/%llu counts as finished, never delivered (done %llu)", dest_names[d],
                  (unsigned long long)s, (unsigned long long)done[d]);
        }
      } else if (!got_main[d].body[s] || got_main[d].len[s] != m->len ||
                 memcmp(got_main[d].body[s], m->body, m->len) != 0) {
        W.lost++;
        problem("%s/%llu ACKed, not found after the cut (done %llu)", dest_names[d],
                (unsigned long long)s, (unsigned long long)done[d]);
      }
      if (m->dead_acked && (!got_dead[d].body[s] || got_dead[d].len[s] != m->len ||
                            memcmp(got_dead[d].body[s], m->body, m->len) != 0)) {
        W.lost++;
        problem("%s/%llu dead-lettered, not in the dead letters", dest_names[d],
                (unsigned long long)s);
      }
    }
  }
}

static void on_cut(void *ud, uint64_t n) {
  (void)ud;
  (void)n;
  pthread_mutex_lock(&W.mu);
  if (W.cuts >= TARGET_CUTS || rnd(&W.rng) % 3 != 0) {
    pthread_mutex_unlock(&W.mu);
    return;
  }
  io_power_t *p = ud;
  long tear = W.cuts % 2 ? (long)rnd(&W.rng) : -1;
  rm_rf(W.cut);
  if (mkdir(W.cut, 0700) != 0 || io_power_cut(p, W.root, W.cut, tear) != 0) abort();
  char data[400], jdir[450], ddir[450];
  snprintf(data, sizeof data, "%s/data", W.cut);
  snprintf(jdir, sizeof jdir, "%s/journal", data);
  snprintf(ddir, sizeof ddir, "%s/deadletter", data);
  W.cuts++;
  if (!restart_store(data)) W.repairs++;
  uint64_t done[NDEST];
  if (read_journal(jdir, got_main, false, done) != 0 || read_journal(ddir, got_dead, true, NULL)) {
    W.repairs++;
    problem("cannot read back the recovered store");
  }
  compare(done);
  for (int d = 0; d < NDEST; d++) {
    got_free(&got_main[d]);
    got_free(&got_dead[d]);
  }
  pthread_mutex_unlock(&W.mu);
}

/* ---- the workload ----------------------------------------------------------- */

typedef struct wait {
  volatile bool done;
  int status;
  uint64_t seqs[4];
  size_t n;
} wait_t;

static void on_done(void *ud, int status, const uint64_t *seqs, size_t n) {
  wait_t *w = ud;
  w->status = status;
  w->n = n;
  for (size_t i = 0; i < n && i < 4; i++) w->seqs[i] = seqs ? seqs[i] : 0;
  w->done = true;
}

static void run_until(uv_loop_t *loop, volatile bool *flag) {
  while (!*flag) uv_run(loop, UV_RUN_ONCE);
}

typedef struct live {
  uv_loop_t *loop;
  cad_queue_t *q;
  const cad_io_t *io;
  int id[NDEST];
  uint64_t next_done[NDEST]; /* next sequence to finish, in order */
  uint64_t dead[64][2];      /* dead-lettered (dest, seq), for requeue */
  int ndead;
  int counter;
  uint64_t segments; /* the highest segment number written */
} live_t;

static int live_open(live_t *l) {
  cad_queue_opts_t o = {.data_dir = W.data,
                        .segment_bytes = SEGMENT_BYTES,
                        .retain_age_ms = 1,
                        .retain_every_ms = 1,
                        .io = l->io};
  char report[1200];
  int rc = cad_queue_open(l->loop, &o, &l->q, report, sizeof report);
  if (rc) return rc;
  for (int d = 0; d < NDEST; d++) {
    l->id[d] = cad_queue_dest(l->q, dest_names[d]);
    if (l->id[d] < 0) return l->id[d];
    const cad_jdest_t *info = cad_queue_dest_info(l->q, (uint16_t)l->id[d]);
    if (l->next_done[d] <= info->done_seq) l->next_done[d] = info->done_seq + 1;
  }
  return 0;
}

static void live_close(live_t *l) {
  q2_closed = false;
  cad_queue_close(l->q, on_q2_closed, NULL);
  run_until(l->loop, &q2_closed);
  l->q = NULL;
}

/* Append a message (n records) and wait; record what was ACKed. */
static void receive(live_t *l, const char *copy_of, size_t copy_len, int only_dest) {
  char bodies[3][900];
  cad_queue_item_t it[3];
  int n = only_dest >= 0 ? 1 : 1 + (int)(rnd(&W.rng) % 3);
  int dests[3];
  for (int i = 0; i < n; i++) {
    dests[i] = only_dest >= 0 ? only_dest : (int)(rnd(&W.rng) % NDEST);
    size_t len;
    if (copy_of) {
      memcpy(bodies[i], copy_of, copy_len);
      len = copy_len;
    } else {
      len = (size_t)snprintf(bodies[i], sizeof bodies[i],
                             "MSH|^~\\&|LAB|H|EHR|H|20240305||ORU^R01|C%07d|P|2.5\rOBX|1|TX|||",
                             l->counter++);
      size_t pad = rnd(&W.rng) % 700;
      memset(bodies[i] + len, 'a' + (int)(l->counter % 26), pad);
      len += pad;
    }
    it[i] = (cad_queue_item_t){(uint16_t)l->id[dests[i]], bodies[i], len};
  }
  wait_t w = {0};
  if (cad_queue_append(l->q, it, (size_t)n, on_done, &w) != 0) return;
  run_until(l->loop, &w.done);
  if (w.status != 0) return;
  pthread_mutex_lock(&W.mu);
  for (int i = 0; i < n; i++) {
    uint64_t s = w.seqs[i];
    if (s == 0 || s > MAX_MSGS) continue;
    msg_t *m = &W.msgs[dests[i]][s];
    m->body = malloc(it[i].len);
    if (!m->body) abort();
    memcpy(m->body, it[i].p, it[i].len);
    m->len = it[i].len;
    if (s > W.acked_max[dests[i]]) W.acked_max[dests[i]] = s;
  }
  pthread_mutex_unlock(&W.mu);
}

/* Finish the next message of dest d: DONE, DEAD or PURGE (up to the last). */
static void finish(live_t *l, int d, uint8_t type) {
  pthread_mutex_lock(&W.mu);
  uint64_t s = type == CAD_JREC_PURGE ? W.acked_max[d] : l->next_done[d];
  bool have = s >= l->next_done[d] && s <= W.acked_max[d] && W.msgs[d][s].body;
  msg_t m = have ? W.msgs[d][s] : (msg_t){0};
  if (have && s > W.finish_issued[d]) W.finish_issued[d] = s; /* issued before written */
  pthread_mutex_unlock(&W.mu);
  if (!have) return;
  wait_t w = {0};
  int rc = cad_queue_mark(l->q, (uint16_t)l->id[d], type, s, type == CAD_JREC_DEAD ? "test" : NULL,
                          m.body, m.len, on_done, &w);
  if (rc) return;
  run_until(l->loop, &w.done);
  if (w.status != 0) return;
  l->next_done[d] = s + 1;
  if (type == CAD_JREC_DEAD) {
    pthread_mutex_lock(&W.mu);
    W.msgs[d][s].dead_acked = true;
    pthread_mutex_unlock(&W.mu);
    if (l->ndead < 64) {
      l->dead[l->ndead][0] = (uint64_t)d;
      l->dead[l->ndead++][1] = s;
    }
  }
}

static void requeue(live_t *l) {
  if (l->ndead == 0) return;
  int k = (int)(rnd(&W.rng) % (unsigned)l->ndead);
  int d = (int)l->dead[k][0];
  pthread_mutex_lock(&W.mu);
  msg_t m = W.msgs[d][l->dead[k][1]];
  char copy[900];
  memcpy(copy, m.body, m.len);
  pthread_mutex_unlock(&W.mu);
  l->dead[k][0] = l->dead[l->ndead - 1][0];
  l->dead[k][1] = l->dead[--l->ndead][1];
  receive(l, copy, m.len, d);
}

/* Steps of each kind: receive, deliver, dead letter, requeue, purge, reopen. */
static long kinds[6];

static void step(live_t *l) {
  unsigned r = rnd(&W.rng) % 100;
  int d = (int)(rnd(&W.rng) % NDEST);
  int k = r < 45 ? 0 : r < 75 ? 1 : r < 83 ? 2 : r < 89 ? 3 : r < 91 ? 4 : r < 93 ? 5 : -1;
  if (k >= 0) kinds[k]++;
  if (k == 0) receive(l, NULL, 0, -1);
  else if (k == 1) finish(l, d, CAD_JREC_DONE);
  else if (k == 2) finish(l, d, CAD_JREC_DEAD);
  else if (k == 3) requeue(l);
  else if (k == 4) finish(l, d, CAD_JREC_PURGE);
  else if (k == 5) {
    live_close(l);
    if (live_open(l) != 0) abort();
  }
}

/* Thousands of small files are written and read back: in memory when it can. */
static const char *shm_or_tmp(void) {
  struct stat st;
  return stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
             ? "/dev/shm"
             : "/tmp";
}

TEST(power_loss_at_every_kind_of_step) {
  /* This test's own time budget (the harness gives each test 60 s; under
   * the sanitizers it takes about 40), bounded by meson's timeout. */
  alarm(240);
  cad_log_setup(CAD_LOG_ERROR, CAD_LOG_KV, -1);
  memset(&W, 0, sizeof W);
  pthread_mutex_init(&W.mu, NULL);
  W.rng = 20241205u;
  snprintf(W.root, sizeof W.root, "%s/cad_test_power_%d", shm_or_tmp(), (int)getpid());
  snprintf(W.cut, sizeof W.cut, "%s/cad_test_power_%d.cut", shm_or_tmp(), (int)getpid());
  snprintf(W.data, sizeof W.data, "%s/data", W.root);
  rm_rf(W.root);
  REQUIRE(mkdir(W.root, 0700) == 0);
  io_power_t *p = io_power_new();
  uv_loop_t loop;
  uv_loop_init(&loop);
  live_t l = {.loop = &loop, .io = io_power_io(p)};
  io_power_set_hook(p, on_cut, p);
  REQUIRE(live_open(&l) == 0);
  long steps = 0;
  while (steps < MAX_STEPS) {
    pthread_mutex_lock(&W.mu);
    bool enough = W.cuts >= TARGET_CUTS;
    pthread_mutex_unlock(&W.mu);
    if (enough) break;
    step(&l);
    steps++;
  }
  live_close(&l);
  io_power_set_hook(p, NULL, NULL);
  char jdir[400];
  snprintf(jdir, sizeof jdir, "%s/journal", W.data);
  DIR *dd = opendir(jdir);
  struct dirent *e;
  while (dd && (e = readdir(dd)) != NULL) {
    uint64_t no = strtoull(e->d_name, NULL, 10);
    if (strstr(e->d_name, ".seg") && no > l.segments) l.segments = no;
  }
  if (dd) closedir(dd);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_INT(uv_loop_close(&loop), 0);
  printf("power-loss: %ld cut points, %ld ACKed lost, %ld repairs\n", W.cuts, W.lost, W.repairs);
  fflush(stdout);
  fprintf(
      stderr,
      "  %ld workload steps (%ld receive, %ld deliver, %ld dead letter, %ld requeue, %ld purge, "
      "%ld reopen; %llu segments written), %ld duplicated sequences\n",
      steps, kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5],
      (unsigned long long)l.segments, W.dups);
  CHECK(W.cuts >= 1000);
  CHECK_INT(W.lost, 0);
  CHECK_INT(W.repairs, 0);
  CHECK_INT(W.dups, 0);
  io_power_free(p);
  for (int d = 0; d < NDEST; d++)
    for (size_t s = 0; s <= MAX_MSGS; s++) free(W.msgs[d][s].body);
  rm_rf(W.root);
  rm_rf(W.cut);
}

TEST_MAIN()
