/* bench_filedest.c - the file destination alone (no network, no queue, no
 * archive): what one file per message costs on this machine's disk, beside
 * the same messages appended to one file by the same destination.
 *
 *   bench_filedest [-n MESSAGES] [-w WINDOW] [-r ROUNDS] WORK_DIR
 *
 * Each round writes MESSAGES (default 30000) 1.1 KB ORU^R01 messages twice,
 * through cad_file_dest on a libuv loop with WINDOW (default 256) writes in
 * flight, as the engine's delivery worker keeps a window of them:
 *   files   dir mode with the quickstart's name template "${MSH-7}_${MSH-10}.hl7"
 *           (a temp file, published under its name, one syncfs and one
 *           directory fsync per batch: file_dest.h)
 *   append  append mode, one fdatasync per batch (the reference)
 * The two take turns round by round (ROUNDS, default 3) in directories of
 * their own under WORK_DIR (created 0700; it must not exist or be empty).
 * Printed per mode: the median rate (messages/s), the median CPU of the
 * whole process per message (user + system, every thread: the loop and the
 * thread pool that writes), and the ratio files / append.  Every file made
 * is removed when the rounds are over, not between them: on ext4 without a
 * journal, inodes freed a moment ago are searched through by the next
 * allocations, which would slow the next round (bench/README.md).
 *
 * What it is for (issue 16): the quickstart's rate at 16 connections is
 * bounded by the rate and CPU of its one-file-per-message destination; this
 * measures both with nothing else running. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "bench_msgs.h"
#include "bench_util.h"
#include "cad_error.h"
#include "cad_mem.h"
#include "file_dest.h"
#include "hl7.h"

#define MAX_ROUNDS 15
#define MAX_MSGS 1000000

typedef struct run {
  cad_file_dest_t *d;
  uint64_t next, done, n;
  uint32_t window, inflight;
  int failed;
  const char *msgs;  /* borrowed: every message, built before the rounds */
  const size_t *off; /* message i is msgs[off[i], off[i + 1]) */
  cad_arena_t arena;
} run_t;

/* Message i: the lab-to-ehr ORU^R01 (~1.1 KB) with its own MSH-7 and MSH-10. */
static size_t make_msg(char *out, size_t cap, uint64_t i) {
  char msh7[32], msh10[32];
  snprintf(msh7, sizeof msh7, "202403051%05llu", (unsigned long long)(i / 64 % 100000));
  snprintf(msh10, sizeof msh10, "LAB%08llu", (unsigned long long)i);
  return bench_lab_oru(out, cap, msh7, msh10, false);
}

static void fill(run_t *r);

static void on_written(int status, void *arg) {
  run_t *r = arg;
  if (status != 0 && !r->failed) {
    r->failed = status;
    fprintf(stderr, "bench_filedest: a write failed: %s\n", cad_strerror(status));
  }
  r->inflight--;
  r->done++;
  fill(r);
}

/* Up to `window` writes in flight; each message is parsed for its name, as
 * the engine's delivery does. */
static void fill(run_t *r) {
  while (!r->failed && r->next < r->n && r->inflight < r->window) {
    const char *p = r->msgs + r->off[r->next];
    size_t len = r->off[r->next + 1] - r->off[r->next];
    cad_hl7_msg_t m;
    cad_arena_reset(&r->arena);
    if (cad_hl7_parse(&m, p, len, &r->arena, NULL, NULL) != 0) {
      fprintf(stderr, "bench_filedest: message %llu does not parse\n", (unsigned long long)r->next);
      r->failed = -1;
      return;
    }
    int rc = cad_file_dest_write(r->d, &m, p, len, on_written, r);
    if (rc != 0) {
      fprintf(stderr, "bench_filedest: write refused: %s\n", cad_strerror(rc));
      r->failed = rc;
      return;
    }
    r->next++;
    r->inflight++;
  }
}

/* One round of one mode into dir; rate and CPU per message out. */
static int one_round(uv_loop_t *loop, const char *dir, bool files, const char *msgs,
                     const size_t *off, uint64_t n, uint32_t window, double *rate, double *cpu_us) {
  cad_file_dest_opts_t o = {0};
  char path[4200];
  if (files) {
    o.dir = dir;
    o.name_tmpl = "${MSH-7}_${MSH-10}.hl7";
  } else {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -errno;
    snprintf(path, sizeof path, "%s/all.hl7", dir);
    o.append_path = path;
  }
  run_t *r = calloc(1, sizeof *r);
  if (!r) return -1;
  cad_arena_init(&r->arena, 16 * 1024, 0);
  r->n = n;
  r->window = window;
  r->msgs = msgs;
  r->off = off;
  char err[512] = "";
  int rc = cad_file_dest_open(loop, &o, &r->d, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "bench_filedest: %s: %s\n", dir, *err ? err : cad_strerror(rc));
    cad_arena_free(&r->arena);
    free(r);
    return rc;
  }
  double c0 = cpu_s(), t0 = now_s();
  fill(r);
  while (r->done < r->next) uv_run(loop, UV_RUN_ONCE);
  double t = now_s() - t0, c = cpu_s() - c0;
  cad_file_dest_close(r->d);
  uv_run(loop, UV_RUN_DEFAULT);
  rc = r->failed;
  *rate = (double)r->done / t;
  *cpu_us = c / (double)(r->done ? r->done : 1) * 1e6;
  cad_arena_free(&r->arena);
  free(r);
  return rc;
}

/* Remove dir's files (no subdirectories are made) and dir. */
static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
  }
  rmdir(dir);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_filedest [-n MESSAGES (<= 1000000)] [-w WINDOW] [-r ROUNDS (<= 15)] "
          "WORK_DIR\n"
          "  one file per message (the quickstart's template) against one appended file,\n"
          "  through the file destination alone; WORK_DIR must not exist or be empty.\n");
}

int main(int argc, char **argv) {
  uint64_t n = 30000;
  uint32_t window = 256;
  int rounds = 3, opt;
  while ((opt = getopt(argc, argv, "n:w:r:h")) != -1) {
    switch (opt) {
      case 'n': n = strtoull(optarg, NULL, 10); break;
      case 'w': window = (uint32_t)strtoul(optarg, NULL, 10); break;
      case 'r': rounds = atoi(optarg); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  /* n messages are built in memory first (1,200 bytes each at most). */
  if (optind != argc - 1 || n == 0 || n > MAX_MSGS || window == 0 || rounds < 1 ||
      rounds > MAX_ROUNDS) {
    usage(stderr);
    return 2;
  }
  const char *work = argv[optind];
  if (mkdir(work, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "bench_filedest: %s: %s\n", work, strerror(errno));
    return 1;
  }
  DIR *wd = opendir(work);
  if (!wd) {
    fprintf(stderr, "bench_filedest: %s: %s\n", work, strerror(errno));
    return 1;
  }
  struct dirent *e;
  while ((e = readdir(wd)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      fprintf(stderr, "bench_filedest: %s is not empty\n", work);
      closedir(wd);
      return 1;
    }
  closedir(wd);

  /* Every message built before the rounds (n x ~1.1 KB; the bytes are
   * borrowed by the destination until each write's callback). */
  char *msgs = malloc(n * 1200);
  size_t *off = malloc((n + 1) * sizeof *off);
  if (!msgs || !off) {
    fprintf(stderr, "bench_filedest: out of memory for %llu messages\n", (unsigned long long)n);
    return 1;
  }
  off[0] = 0;
  for (uint64_t i = 0; i < n; i++) off[i + 1] = off[i] + make_msg(msgs + off[i], 1200, i);

  uv_loop_t loop;
  uv_loop_init(&loop);
  printf("bench_filedest: %llu messages of ~1.1 KB per round, %u in flight, %d rounds, in %s\n",
         (unsigned long long)n, window, rounds, work);
  double rate[2][MAX_ROUNDS], cpu[2][MAX_ROUNDS], ratio[MAX_ROUNDS];
  int rc = 0;
  for (int k = 0; k < rounds && rc == 0; k++) {
    for (int mode = 0; mode < 2 && rc == 0; mode++) {
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/%s%d", work, mode ? "append" : "files", k);
      rc = one_round(&loop, dir, mode == 0, msgs, off, n, window, &rate[mode][k], &cpu[mode][k]);
      if (rc == 0)
        printf("  round %d %-6s %8.0f msgs/s %7.1f us cpu/msg\n", k + 1, mode ? "append" : "files",
               rate[mode][k], cpu[mode][k]);
    }
    if (rc == 0) ratio[k] = rate[0][k] / rate[1][k];
  }
  for (int k = 0; k < rounds; k++)
    for (int mode = 0; mode < 2; mode++) {
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/%s%d", work, mode ? "append" : "files", k);
      remove_dir(dir);
    }
  rmdir(work);
  uv_loop_close(&loop);
  free(msgs);
  free(off);
  if (rc != 0) return 1;
  for (int mode = 0; mode < 2; mode++) {
    qsort(rate[mode], (size_t)rounds, sizeof(double), cmp_d);
    qsort(cpu[mode], (size_t)rounds, sizeof(double), cmp_d);
  }
  qsort(ratio, (size_t)rounds, sizeof(double), cmp_d);
  printf("median  files  %8.0f msgs/s %7.1f us cpu/msg\n", rate[0][rounds / 2], cpu[0][rounds / 2]);
  printf("median  append %8.0f msgs/s %7.1f us cpu/msg (reference)\n", rate[1][rounds / 2],
         cpu[1][rounds / 2]);
  printf("files / append: %.2f x the rate (median of rounds)\n", ratio[rounds / 2]);
  return 0;
}
