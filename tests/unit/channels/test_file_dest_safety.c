/* test_file_dest_safety.c - the file destination against a hostile output
 * directory (planted symlinks, FIFOs), names that collide, permissions, and
 * I/O failures injected through the cad_io_t seam. */
#include "file_dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cad_error.h"
#include "harness.h"

static char tmpdir[256], outdir[320];

static void make_tmp(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cad-fds-XXXXXX");
  if (!mkdtemp(tmpdir)) abort();
  snprintf(outdir, sizeof outdir, "%s/out", tmpdir);
}

static void rm_rf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

static void put_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) abort();
  fputs(text, f);
  fclose(f);
}

static char *slurp(const char *path, size_t *n) { return cad_test_read_file(path, n); }

static int done_count, last_status, ok_count;
static void on_done(int status, void *arg) {
  (void)arg;
  done_count++;
  if (status < 0) last_status = status;
  else ok_count++;
}

typedef struct {
  cad_arena_t a;
  cad_hl7_msg_t m;
  char text[512];
  size_t len;
} msg_t;

static int parse(msg_t *x, const char *ctl, const char *body) {
  x->len = (size_t)snprintf(x->text, sizeof x->text,
                            "MSH|^~\\&|A|B|C|D|20260101120000||ORU^R01|%s|P|2.5\rOBX|1|ST|%s\r",
                            ctl, body);
  cad_arena_init(&x->a, 0, 0);
  return cad_hl7_parse(&x->m, x->text, x->len, &x->a, NULL, NULL);
}

/* Write the messages (one batch each unless max_batch > 1) and run the loop. */
static void write_all(uv_loop_t *loop, cad_file_dest_t *d, msg_t *x, int n) {
  done_count = ok_count = last_status = 0;
  for (int i = 0; i < n; i++)
    CHECK_INT(cad_file_dest_write(d, &x[i].m, x[i].text, x[i].len, on_done, NULL), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_INT(done_count, n);
}

static int count_entries(const char *dir, int *tmps) {
  DIR *dp = opendir(dir);
  if (!dp) return -1;
  int n = 0;
  *tmps = 0;
  struct dirent *e;
  while ((e = readdir(dp))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    n++;
    if (!strncmp(e->d_name, ".tmp", 4)) (*tmps)++;
  }
  closedir(dp);
  return n;
}

/* ---- a recording / fault-injecting I/O table ------------------------------ */

typedef struct {
  const cad_io_t *sys;
  int fail_write, fail_fsync, fail_fdatasync, fail_rename, fail_syncfs; /* errno to return */
  int creates, creates_unsafe; /* openat with O_CREAT; without O_EXCL|O_NOFOLLOW */
  char last_tmp[2][64];        /* the last two names created */
} fault_t;

static fault_t F;

static int f_openat(void *c, int d, const char *p, int fl, mode_t m) {
  (void)c;
  if (fl & O_CREAT) {
    F.creates++;
    if ((fl & (O_EXCL | O_NOFOLLOW)) != (O_EXCL | O_NOFOLLOW)) F.creates_unsafe++;
    memcpy(F.last_tmp[0], F.last_tmp[1], sizeof F.last_tmp[0]);
    snprintf(F.last_tmp[1], sizeof F.last_tmp[1], "%s", p);
  }
  return F.sys->openat(F.sys->ctx, d, p, fl, m);
}
static ssize_t f_pwrite(void *c, int fd, const void *b, size_t n, off_t o) {
  (void)c;
  if (F.fail_write) return -F.fail_write;
  return F.sys->pwrite(F.sys->ctx, fd, b, n, o);
}
static ssize_t f_writev(void *c, int fd, const struct iovec *v, int k) {
  (void)c;
  if (F.fail_write) return -F.fail_write;
  return F.sys->writev(F.sys->ctx, fd, v, k);
}
static int f_fsync(void *c, int fd) {
  (void)c;
  return F.fail_fsync ? -F.fail_fsync : F.sys->fsync(F.sys->ctx, fd);
}
static int f_fdatasync(void *c, int fd) {
  (void)c;
  return F.fail_fdatasync ? -F.fail_fdatasync : F.sys->fdatasync(F.sys->ctx, fd);
}
static int f_syncfs(void *c, int fd) {
  (void)c;
  return F.fail_syncfs ? -F.fail_syncfs : F.sys->syncfs(F.sys->ctx, fd);
}
static int f_renameat2(void *c, int od, const char *op, int nd, const char *np, unsigned fl) {
  (void)c;
  if (F.fail_rename) return -F.fail_rename;
  return F.sys->renameat2(F.sys->ctx, od, op, nd, np, fl);
}
static int f_renameat(void *c, int od, const char *op, int nd, const char *np) {
  (void)c;
  if (F.fail_rename) return -F.fail_rename;
  return F.sys->renameat(F.sys->ctx, od, op, nd, np);
}

static cad_io_t fault_io(void) {
  memset(&F, 0, sizeof F);
  F.sys = cad_io_default();
  cad_io_t io = *F.sys;
  io.openat = f_openat;
  io.pwrite = f_pwrite;
  io.writev = f_writev;
  io.fsync = f_fsync;
  io.fdatasync = f_fdatasync;
  io.syncfs = f_syncfs;
  io.renameat2 = f_renameat2;
  io.renameat = f_renameat;
  return io;
}

static cad_file_dest_t *open_out(uv_loop_t *loop, const char *tmpl, const cad_io_t *io,
                                 uint32_t max_batch) {
  cad_file_dest_opts_t o = {.dir = outdir, .name_tmpl = tmpl, .io = io, .max_batch = max_batch};
  cad_file_dest_t *d = NULL;
  char err[200] = "";
  int rc = cad_file_dest_open(loop, &o, &d, err, sizeof err);
  if (rc < 0) fprintf(stderr, "open: %s\n", err);
  return d;
}

/* ---- item 2: planted symlinks and FIFOs --------------------------------- */

TEST(planted_symlink_at_temp_name_is_not_followed) {
  make_tmp();
  char victim[400], link[500];
  snprintf(victim, sizeof victim, "%s/victim.txt", tmpdir);
  put_file(victim, "precious\n");
  REQUIRE(mkdir(outdir, 0700) == 0);
  /* Symlinks at every temp name an earlier engine would have used. */
  for (int i = 1; i <= 4; i++) {
    snprintf(link, sizeof link, "%s/.tmp.%d.%d", outdir, i, (int)getpid());
    REQUIRE(symlink(victim, link) == 0);
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_io_t io = fault_io();
  cad_file_dest_t *d = open_out(&loop, NULL, &io, 0);
  REQUIRE(d);
  msg_t x[2];
  REQUIRE(parse(&x[0], "A1", "one") == 0);
  REQUIRE(parse(&x[1], "A2", "two") == 0);
  write_all(&loop, d, x, 2);
  CHECK_INT(ok_count, 2);
  size_t n = 0;
  char *got = slurp(victim, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, "precious\n");
  free(got);
  /* Every file was created exclusively, never through a symlink, under a
   * name nobody could guess: two temp names share no more than the prefix. */
  CHECK(F.creates >= 2);
  CHECK_INT(F.creates_unsafe, 0);
  CHECK(strlen(F.last_tmp[0]) >= 20 && strlen(F.last_tmp[1]) >= 20);
  CHECK(strncmp(F.last_tmp[0], F.last_tmp[1], 12) != 0);
  cad_file_dest_close(d);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  for (int i = 0; i < 2; i++) cad_arena_free(&x[i].a);
  rm_rf(tmpdir);
}

TEST(planted_symlink_at_final_name_is_kept_and_not_followed) {
  make_tmp();
  char victim[400], link[500], p[500];
  snprintf(victim, sizeof victim, "%s/victim.txt", tmpdir);
  put_file(victim, "precious\n");
  REQUIRE(mkdir(outdir, 0700) == 0);
  snprintf(link, sizeof link, "%s/M1.hl7", outdir);
  REQUIRE(symlink(victim, link) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_file_dest_t *d = open_out(&loop, NULL, NULL, 0);
  REQUIRE(d);
  msg_t x;
  REQUIRE(parse(&x, "M1", "one") == 0);
  write_all(&loop, d, &x, 1);
  CHECK_INT(last_status, 0);
  size_t n = 0;
  char *got = slurp(victim, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, "precious\n");
  free(got);
  struct stat st;
  CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode)); /* not replaced */
  snprintf(p, sizeof p, "%s/M1~2.hl7", outdir);
  got = slurp(p, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, x.text);
  free(got);
  /* A FIFO at the name is looked at without blocking, and kept. */
  msg_t y;
  REQUIRE(parse(&y, "M2", "two") == 0);
  snprintf(p, sizeof p, "%s/M2.hl7", outdir);
  REQUIRE(mkfifo(p, 0600) == 0);
  alarm(5);
  write_all(&loop, d, &y, 1);
  alarm(0);
  CHECK_INT(last_status, 0);
  struct stat fst;
  CHECK(lstat(p, &fst) == 0 && S_ISFIFO(fst.st_mode));
  snprintf(p, sizeof p, "%s/M2~2.hl7", outdir);
  got = slurp(p, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, y.text);
  free(got);
  cad_arena_free(&y.a);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  cad_arena_free(&x.a);
  rm_rf(tmpdir);
}

static int open_append_at(uv_loop_t *loop, const char *path, cad_file_dest_t **d, char *err,
                          size_t cap) {
  cad_file_dest_opts_t o = {.append_path = path};
  return cad_file_dest_open(loop, &o, d, err, cap);
}

TEST(append_refuses_fifo_symlink_and_device_without_blocking) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  char fifo[400], link[400], victim[400], err[300];
  snprintf(fifo, sizeof fifo, "%s/all.hl7", tmpdir);
  REQUIRE(mkfifo(fifo, 0600) == 0);
  cad_file_dest_t *d = NULL;
  alarm(5); /* an open that blocks on the FIFO fails the test here */
  CHECK_INT(open_append_at(&loop, fifo, &d, err, sizeof err), CAD_E_INVAL);
  alarm(0);
  CHECK(strstr(err, "FIFO") != NULL);
  snprintf(victim, sizeof victim, "%s/victim.txt", tmpdir);
  put_file(victim, "precious\n");
  snprintf(link, sizeof link, "%s/link.hl7", tmpdir);
  REQUIRE(symlink(victim, link) == 0);
  CHECK_INT(open_append_at(&loop, link, &d, err, sizeof err), CAD_E_INVAL);
  CHECK(strstr(err, "symbolic link") != NULL);
  CHECK_INT(open_append_at(&loop, "/dev/null", &d, err, sizeof err), CAD_E_INVAL);
  CHECK(strstr(err, "device") != NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

/* ---- item 1: names that collide ------------------------------------------ */

TEST(colliding_names_get_a_suffix_and_redelivery_no_duplicate) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_file_dest_t *d = open_out(&loop, "${MSH-7}_${MSH-10}.hl7", NULL, 0);
  REQUIRE(d);
  /* "a/b" and "a?b" are both made "a_b"; a 70-byte id is cut at 64. */
  char long1[80], long2[80];
  memset(long1, 'x', 70);
  long1[70] = 0;
  memcpy(long2, long1, sizeof long1);
  long2[69] = 'y';
  msg_t x[5];
  REQUIRE(parse(&x[0], "a/b", "first") == 0);
  REQUIRE(parse(&x[1], "a?b", "second") == 0);
  REQUIRE(parse(&x[2], long1, "third") == 0);
  REQUIRE(parse(&x[3], long2, "fourth") == 0);
  REQUIRE(parse(&x[4], "a/b", "first") == 0); /* x[0] redelivered */
  write_all(&loop, d, x, 5);
  CHECK_INT(ok_count, 5);
  char p[600], cut[65];
  size_t n = 0;
  snprintf(p, sizeof p, "%s/20260101120000_a_b.hl7", outdir);
  char *got = slurp(p, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, x[0].text);
  free(got);
  snprintf(p, sizeof p, "%s/20260101120000_a_b~2.hl7", outdir);
  got = slurp(p, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, x[1].text);
  free(got);
  memcpy(cut, long1, 64);
  cut[64] = 0;
  snprintf(p, sizeof p, "%s/20260101120000_%s~2.hl7", outdir, cut);
  got = slurp(p, &n);
  REQUIRE(got);
  CHECK_STRN(got, n, x[3].text);
  free(got);
  int tmps = 0;
  CHECK_INT(count_entries(outdir, &tmps), 4); /* the redelivery added nothing */
  CHECK_INT(tmps, 0);
  /* The same batch again (a crash before the queue recorded it): nothing new. */
  write_all(&loop, d, x, 5);
  CHECK_INT(ok_count, 5);
  CHECK_INT(count_entries(outdir, &tmps), 4);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  for (int i = 0; i < 5; i++) cad_arena_free(&x[i].a);
  rm_rf(tmpdir);
}

TEST(stale_temp_files_are_removed_at_open_fresh_ones_kept) {
  make_tmp();
  REQUIRE(mkdir(outdir, 0700) == 0);
  const char *names[] = {".tmp.0123456789abcdef01234567", ".tmp.76543210fedcba9876543210",
                         ".tmp.notours", "keep.hl7"};
  char p[4][500];
  for (int i = 0; i < 4; i++) {
    snprintf(p[i], sizeof p[i], "%s/%s", outdir, names[i]);
    put_file(p[i], "x");
  }
  /* The first and the last two are an hour old; the second is fresh. */
  struct timespec old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
  REQUIRE(utimensat(AT_FDCWD, p[0], old, 0) == 0);
  REQUIRE(utimensat(AT_FDCWD, p[2], old, 0) == 0);
  REQUIRE(utimensat(AT_FDCWD, p[3], old, 0) == 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_file_dest_t *d = open_out(&loop, NULL, NULL, 0);
  REQUIRE(d);
  CHECK(access(p[0], F_OK) != 0);
  CHECK(access(p[1], F_OK) == 0); /* maybe another destination's, being written */
  CHECK(access(p[2], F_OK) == 0);
  CHECK(access(p[3], F_OK) == 0);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

/* ---- item 19: permissions ------------------------------------------------- */

TEST(outputs_are_private_unless_configured) {
  make_tmp();
  mode_t old = umask(022);
  uv_loop_t loop;
  uv_loop_init(&loop);
  char sub[400], p[500], ap[500];
  snprintf(sub, sizeof sub, "%s/new/dir", outdir);
  cad_file_dest_opts_t o = {.dir = sub};
  cad_file_dest_t *d = NULL;
  REQUIRE(cad_file_dest_open(&loop, &o, &d, NULL, 0) == 0);
  msg_t x;
  REQUIRE(parse(&x, "P1", "x") == 0);
  write_all(&loop, d, &x, 1);
  cad_file_dest_close(d);
  struct stat st;
  snprintf(p, sizeof p, "%s/P1.hl7", sub);
  REQUIRE(stat(p, &st) == 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  REQUIRE(stat(sub, &st) == 0);
  CHECK_INT(st.st_mode & 0777, 0700);
  snprintf(ap, sizeof ap, "%s/a/all.hl7", tmpdir);
  o = (cad_file_dest_opts_t){.append_path = ap};
  REQUIRE(cad_file_dest_open(&loop, &o, &d, NULL, 0) == 0);
  cad_file_dest_close(d);
  REQUIRE(stat(ap, &st) == 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  /* Configured modes. */
  snprintf(sub, sizeof sub, "%s/shared", tmpdir);
  o = (cad_file_dest_opts_t){.dir = sub, .mode = 0640, .dir_mode = 0750};
  REQUIRE(cad_file_dest_open(&loop, &o, &d, NULL, 0) == 0);
  write_all(&loop, d, &x, 1);
  cad_file_dest_close(d);
  snprintf(p, sizeof p, "%s/P1.hl7", sub);
  REQUIRE(stat(p, &st) == 0);
  CHECK_INT(st.st_mode & 0777, 0640);
  REQUIRE(stat(sub, &st) == 0);
  CHECK_INT(st.st_mode & 0777, 0750);
  CHECK_INT(uv_loop_close(&loop), 0);
  cad_arena_free(&x.a);
  umask(old);
  rm_rf(tmpdir);
}

/* ---- the I/O seam: failures are reported, nothing is left behind ---------- */

/* want_ok: deliveries that do not meet the fault (the first message of a
 * destination goes alone, so it meets fdatasync, not syncfs). */
static void fault_case(const char *what, int *knob, int err, uint32_t batch, int want_ok) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_io_t io = fault_io();
  *knob = err;
  cad_file_dest_t *d = open_out(&loop, NULL, &io, batch);
  REQUIRE(d);
  msg_t x[3];
  REQUIRE(parse(&x[0], "F1", "a") == 0);
  REQUIRE(parse(&x[1], "F2", "b") == 0);
  REQUIRE(parse(&x[2], "F3", "c") == 0);
  write_all(&loop, d, x, 3);
  if (ok_count != want_ok || last_status != -err)
    fprintf(stderr, "%s: %d succeeded, status %d\n", what, ok_count, last_status);
  CHECK_INT(ok_count, want_ok);
  CHECK_INT(last_status, -err);
  int tmps = 0;
  int n = count_entries(outdir, &tmps);
  CHECK_INT(tmps, 0);
  /* A failed rename or write publishes nothing; a failed directory fsync may
   * leave published names (the retry recognises them as written). */
  if (knob != &F.fail_fsync) CHECK_INT(n, want_ok);
  /* Once the disk recovers the retry succeeds, without duplicates. */
  *knob = 0;
  write_all(&loop, d, x, 3);
  CHECK_INT(ok_count, 3);
  CHECK_INT(count_entries(outdir, &tmps), 3);
  CHECK_INT(tmps, 0);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  for (int i = 0; i < 3; i++) cad_arena_free(&x[i].a);
  rm_rf(tmpdir);
}

TEST(write_enospc_is_a_failed_delivery) {
  fault_case("write", &F.fail_write, ENOSPC, 1, 0);
  fault_case("write batch", &F.fail_write, ENOSPC, 0, 0);
}

TEST(sync_eio_is_a_failed_delivery) {
  fault_case("fdatasync", &F.fail_fdatasync, EIO, 1, 0);
  fault_case("syncfs", &F.fail_syncfs, EIO, 0, 1);
  fault_case("dir fsync", &F.fail_fsync, EIO, 1, 0);
}

TEST(rename_failure_is_a_failed_delivery) {
  fault_case("rename", &F.fail_rename, EIO, 1, 0);
  fault_case("rename batch", &F.fail_rename, EDQUOT, 0, 0);
}

TEST(append_sync_failure_is_a_failed_delivery) {
  make_tmp();
  uv_loop_t loop;
  uv_loop_init(&loop);
  cad_io_t io = fault_io();
  char ap[400];
  snprintf(ap, sizeof ap, "%s/all.hl7", tmpdir);
  cad_file_dest_opts_t o = {.append_path = ap, .io = &io};
  cad_file_dest_t *d = NULL;
  REQUIRE(cad_file_dest_open(&loop, &o, &d, NULL, 0) == 0);
  F.fail_fdatasync = EIO;
  done_count = ok_count = last_status = 0;
  CHECK_INT(cad_file_dest_write(d, NULL, "MSH|a\r", 6, on_done, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(ok_count, 0);
  CHECK_INT(last_status, -EIO);
  cad_file_dest_close(d);
  CHECK_INT(uv_loop_close(&loop), 0);
  rm_rf(tmpdir);
}

TEST_MAIN()
