/* test_file_batch.c - the file destination's batch files (file_batch.h):
 * the envelope, rolls by count, what a crash leaves in the stage (a torn
 * tail, a COMMIT whose file exists or not) and what the next open makes of
 * it, and the SFTP helper thread (sftp_bg.h) that runs jobs off the loop. */
#include "file_batch.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cad_error.h"
#include "harness.h"
#include "sftp_bg.h"

static char tmpdir[256];

static void make_tmp(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cad-fb-XXXXXX");
  if (!mkdtemp(tmpdir)) abort();
}

static void rm_rf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

TEST(envelope) {
  char head[512], tail[64];
  const char *m = "MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101||ADT^A01|1|P|2.5\rPID|1\r";
  CHECK_INT(cad_file_batch_envelope(m, strlen(m), 3, 1767225600, "b.hl7", "C1", head, sizeof head,
                                    tail, sizeof tail),
            0);
  CHECK_STR(head,
            "FHS|^~\\&|LAB|NORTH|EHR|SOUTH|20260101000000||b.hl7||C1\r"
            "BHS|^~\\&|LAB|NORTH|EHR|SOUTH|20260101000000||b.hl7||C1\r");
  CHECK_STR(tail, "BTS|3\rFTS|1\r");
  /* Other delimiters are kept; a short MSH gives empty fields. */
  const char *h = "MSH#^~\\&#A";
  CHECK_INT(
      cad_file_batch_envelope(h, strlen(h), 1, 0, "x", "C", head, sizeof head, tail, sizeof tail),
      0);
  CHECK_STR(head, "FHS#^~\\&#A####19700101000000##x##C\rBHS#^~\\&#A####19700101000000##x##C\r");
  CHECK_STR(tail, "BTS#1\rFTS#1\r");
  CHECK_INT(
      cad_file_batch_envelope("PID|1", 5, 1, 0, "x", "C", head, sizeof head, tail, sizeof tail),
      CAD_E_INVAL);
  CHECK_INT(
      cad_file_batch_envelope("MSH|\r", 5, 1, 0, "x", "C", head, sizeof head, tail, sizeof tail),
      CAD_E_INVAL);
}

static int done_count, done_errors;
static void on_done(int status, void *arg) {
  (void)arg;
  done_count++;
  if (status) done_errors++;
}

/* Batch files in dir (not hidden), sorted; their count. */
static int list_batches(const char *dir, char names[][64], int cap) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.' && n < cap) snprintf(names[n++], 64, "%.63s", e->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
  return n;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = calloc(1, 1 << 16);
  size_t n = fread(b, 1, (1 << 16) - 1, f);
  b[n] = 0;
  fclose(f);
  return b;
}

static int count_of(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p++) n++;
  return n;
}

static void run_until(uv_loop_t *loop, int want) {
  for (int i = 0; i < 2000 && done_count < want; i++) uv_run(loop, UV_RUN_ONCE);
}

TEST(rolls_by_count) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  char dir[300], err[200] = "";
  snprintf(dir, sizeof dir, "%s/out", tmpdir);
  cad_file_batch_opts_t o = {true, 4, 1 << 20, 3600000, "b_%Y.hl7"};
  cad_file_batch_t *b = NULL;
  REQUIRE(cad_file_batch_open(&loop, dir, &o, 0600, 0700, &b, err, sizeof err) == 0);
  static char msgs[10][128];
  done_count = done_errors = 0;
  for (int i = 0; i < 10; i++) {
    snprintf(msgs[i], sizeof msgs[i], "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|M%d|P|2.5\rPID|1", i);
    REQUIRE(cad_file_batch_write(b, msgs[i], strlen(msgs[i]), on_done, NULL) == 0);
  }
  run_until(&loop, 10);
  CHECK_INT(done_count, 10);
  CHECK_INT(done_errors, 0);
  CHECK_INT((int)cad_file_batch_count(b), 2); /* 4 + 4; 2 staged */
  cad_file_batch_close(b);
  uv_run(&loop, UV_RUN_DEFAULT);
  char names[8][64];
  REQUIRE(list_batches(dir, names, 8) == 2);
  char path[400];
  snprintf(path, sizeof path, "%s/%s", dir, names[0]);
  char *t = slurp(path);
  REQUIRE(t);
  CHECK(strncmp(t, "FHS|^~\\&|A|B|C|D|", 17) == 0);
  CHECK_INT(count_of(t, "\rMSH|"), 4);
  CHECK(strstr(t, "\rBTS|4\rFTS|1\r") != NULL);
  CHECK(strstr(t, "|M0|") && strstr(t, "|M3|") && !strstr(t, "|M4|"));
  free(t);
  struct stat st;
  REQUIRE(stat(path, &st) == 0);
  CHECK_INT((int)(st.st_mode & 0777), 0600);
  /* The 2 staged are published at the next open, as a batch. */
  REQUIRE(cad_file_batch_open(&loop, dir, &o, 0600, 0700, &b, err, sizeof err) == 0);
  for (int i = 0; i < 200 && cad_file_batch_count(b) < 1; i++) uv_run(&loop, UV_RUN_ONCE);
  CHECK_INT((int)cad_file_batch_count(b), 1);
  cad_file_batch_close(b);
  uv_run(&loop, UV_RUN_DEFAULT);
  REQUIRE(list_batches(dir, names, 8) == 3);
  snprintf(path, sizeof path, "%s/%s", dir, names[2]);
  t = slurp(path);
  REQUIRE(t);
  CHECK(strstr(t, "|M8|") && strstr(t, "|M9|") && strstr(t, "\rBTS|2\r"));
  free(t);
  uv_loop_close(&loop);
  rm_rf(tmpdir);
}

/* A stage as a crash leaves it: records, then `extra` bytes. */
static void put_rec(int fd, uint32_t type, const char *p) {
  unsigned char h[12];
  uint32_t len = (uint32_t)strlen(p), crc = (uint32_t)crc32(0, (const Bytef *)p, len);
  for (int i = 0; i < 4; i++) {
    h[i] = (unsigned char)(type >> (8 * i));
    h[4 + i] = (unsigned char)(len >> (8 * i));
    h[8 + i] = (unsigned char)(crc >> (8 * i));
  }
  REQUIRE(write(fd, h, 12) == 12);
  REQUIRE(write(fd, p, len) == (ssize_t)len);
}

#define MUST(c)  \
  do {           \
    if (!(c)) {  \
      CHECK(c);  \
      return -1; \
    }            \
  } while (0)

static int recovered_batches(const char *dir, bool commit, bool commit_file_exists, char *first) {
  char path[400];
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/.batch.stage", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  MUST(fd >= 0);
  put_rec(fd, 0x42444143u, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|S1|P|2.5");
  put_rec(fd, 0x42444143u, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|S2|P|2.5");
  if (commit) put_rec(fd, 0x43444143u, "old.hl7");
  MUST(write(fd, "\x43\x41\x44\x42\x30\x00", 6) == 6); /* a torn record */
  close(fd);
  if (commit_file_exists) {
    snprintf(path, sizeof path, "%s/old.hl7", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    MUST(fd >= 0);
    close(fd);
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_file_batch_opts_t o = {true, 100, 1 << 20, 3600000, "new.hl7"};
  cad_file_batch_t *b = NULL;
  char err[200];
  MUST(cad_file_batch_open(&loop, dir, &o, 0600, 0700, &b, err, sizeof err) == 0);
  cad_file_batch_close(b);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  snprintf(path, sizeof path, "%s/new.hl7", dir);
  char *t = slurp(path);
  first[0] = 0;
  if (t) snprintf(first, 256, "%s", t);
  free(t);
  struct stat st;
  snprintf(path, sizeof path, "%s/.batch.stage", dir);
  CHECK(stat(path, &st) == 0 && st.st_size == 0);
  return first[0] ? 1 : 0;
}

TEST(recovery_after_a_crash) {
  make_tmp();
  char dir[300], text[256];
  /* Staged, never committed: published at open; the torn tail is cut. */
  snprintf(dir, sizeof dir, "%s/a", tmpdir);
  CHECK_INT(recovered_batches(dir, false, false, text), 1);
  CHECK(strstr(text, "|S1|") && strstr(text, "|S2|") && strstr(text, "\rBTS|2\rFTS|1\r"));
  /* COMMIT written, the file never renamed in: published again. */
  snprintf(dir, sizeof dir, "%s/b", tmpdir);
  CHECK_INT(recovered_batches(dir, true, false, text), 1);
  CHECK(strstr(text, "\rBTS|2\r") != NULL);
  /* COMMIT written and the file is there: it was published; not twice. */
  snprintf(dir, sizeof dir, "%s/c", tmpdir);
  CHECK_INT(recovered_batches(dir, true, true, text), 0);
  rm_rf(tmpdir);
}

/* A reload opens the new instance while the old one still runs: the new one
 * waits for the stage until the old one is closed, then goes on. */
static void close_later(uv_timer_t *t) { cad_file_batch_close(t->data); }

TEST(one_instance_per_stage) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  char dir[300], err[200] = "";
  snprintf(dir, sizeof dir, "%s/out", tmpdir);
  cad_file_batch_opts_t o = {true, 2, 1 << 20, 3600000, "b.hl7"};
  cad_file_batch_t *old = NULL, *neu = NULL;
  REQUIRE(cad_file_batch_open(&loop, dir, &o, 0600, 0700, &old, err, sizeof err) == 0);
  static const char m1[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|O1|P|2.5";
  static const char m2[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|N1|P|2.5";
  done_count = done_errors = 0;
  REQUIRE(cad_file_batch_write(old, m1, strlen(m1), on_done, NULL) == 0);
  run_until(&loop, 1);
  REQUIRE(cad_file_batch_open(&loop, dir, &o, 0600, 0700, &neu, err, sizeof err) == 0);
  REQUIRE(cad_file_batch_write(neu, m2, strlen(m2), on_done, NULL) == 0);
  for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_INT(done_count, 1); /* the new one waits */
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = old;
  uv_timer_start(&t, close_later, 100, 0);
  run_until(&loop, 2);
  CHECK_INT(done_count, 2);
  CHECK_INT(done_errors, 0);
  /* O1, staged by the old one, is published when the new one takes the
   * stage; N1 waits in it for its batch. */
  CHECK_INT((int)cad_file_batch_count(neu), 1);
  cad_file_batch_close(neu);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  char path[400];
  snprintf(path, sizeof path, "%s/b.hl7", dir);
  char *text = slurp(path);
  REQUIRE(text);
  CHECK(strstr(text, "|O1|") && !strstr(text, "|N1|") && strstr(text, "\rBTS|1\r"));
  free(text);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

/* ---- sftp_bg: jobs run off the loop, in order, done on the loop ---- */

typedef struct job {
  cad_bg_job_t j;
  int n;
  uv_thread_t ran_on;
} job_t;

static int order[8], norder;
static uv_thread_t loop_thread;

static void job_run(cad_bg_job_t *j) { ((job_t *)j)->ran_on = uv_thread_self(); }
static void job_done(cad_bg_job_t *j) {
  job_t *x = (job_t *)j;
  CHECK(!uv_thread_equal(&x->ran_on, &loop_thread));
  uv_thread_t me = uv_thread_self();
  CHECK(uv_thread_equal(&me, &loop_thread));
  order[norder++] = x->n;
}
static int closed;
static void on_closed(void *arg) {
  (void)arg;
  closed++;
}

TEST(bg_thread) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_thread = uv_thread_self();
  cad_bg_t *bg = NULL;
  REQUIRE(cad_bg_start(&loop, &bg) == 0);
  job_t jobs[5];
  for (int i = 0; i < 5; i++) {
    jobs[i] = (job_t){{NULL, job_run, job_done}, i, loop_thread};
    REQUIRE(cad_bg_post(bg, &jobs[i].j) == 0);
  }
  cad_bg_stop(bg, on_closed, NULL); /* the posted jobs still run */
  job_t late = {{NULL, job_run, job_done}, 9, loop_thread};
  CHECK_INT(cad_bg_post(bg, &late.j), CAD_E_STATE);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(norder, 5);
  for (int i = 0; i < 5; i++) CHECK_INT(order[i], i);
  CHECK_INT(closed, 1);
  CHECK_INT(uv_loop_close(&loop), 0);
}

TEST_MAIN()
