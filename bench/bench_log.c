/* bench_log.c - what one info line of the message path costs.
 *
 *   build/bench/bench_log [LINES]
 *
 * Writes LINES (default 300000) `msg.accepted` lines, as the pipeline logs
 * every message at info (channel, peer, conn, ctl, type, bytes, outcome,
 * id), to /dev/null, and beside it, in the same run, the floor: one
 * write(2) of a line of the same length per message.  Prints the median of
 * 5 rounds of each in ns/line and the ratio.  Then the same lines to a
 * regular file (as stderr redirected to a file or a journal pipe would
 * take them), written one by one and batched as the engine's loop thread
 * does (cad_log_batch: here flushed every 16 lines, one loop iteration
 * under load).  One thread.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  long lines = argc > 1 ? atol(argv[1]) : 300000;
  int fd = open("/dev/null", O_WRONLY);
  if (fd < 0 || lines <= 0) return 2;
  cad_log_setup(CAD_LOG_INFO, CAD_LOG_KV, fd);
  cad_log_num_t nums[1] = {{"id", 0}};
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = "lab";
  c.peer = "127.0.0.1:40122";
  c.ctl = (cad_str_t){"MSG0000042", 10};
  c.type = (cad_str_t){"ORU^R01", 7};
  c.bytes = 1125;
  c.outcome = "AA";
  c.nums = nums;
  c.nnums = 1;
  const char line[] =
      "2026-12-05T22:10:00.123Z level=info event=msg.accepted channel=lab peer=127.0.0.1:40122 "
      "conn=7 ctl=MSG0000042 type=ORU^R01 bytes=1125 outcome=AA id=123456\n";
  double log_ns[5], wr_ns[5];
  for (int r = 0; r < 5; r++) {
    double t0 = now_s();
    for (long i = 0; i < lines; i++) {
      c.conn = (uint64_t)(i & 63) + 1;
      nums[0].val = (uint64_t)i;
      CAD_LOG(CAD_LOG_INFO, "msg.accepted", &c, NULL);
    }
    double t1 = now_s();
    for (long i = 0; i < lines; i++)
      if (write(fd, line, sizeof line - 1) < 0) return 1;
    double t2 = now_s();
    log_ns[r] = (t1 - t0) * 1e9 / (double)lines;
    wr_ns[r] = (t2 - t1) * 1e9 / (double)lines;
  }
  qsort(log_ns, 5, sizeof log_ns[0], cmp);
  qsort(wr_ns, 5, sizeof wr_ns[0], cmp);
  printf(
      "info line (msg.accepted, kv): %.0f ns/line; one write(2) of it alone: %.0f ns/line; "
      "formatting: %.0f ns (%.2fx the write)\n",
      log_ns[2], wr_ns[2], log_ns[2] - wr_ns[2], (log_ns[2] - wr_ns[2]) / wr_ns[2]);
  close(fd);
  /* To a file: one write per line vs the loop thread's batch. */
  char path[] = "/tmp/cad-bench-log-XXXXXX";
  int ffd = mkstemp(path);
  if (ffd < 0) return 2;
  unlink(path);
  cad_log_setup(CAD_LOG_INFO, CAD_LOG_KV, ffd);
  double direct_ns[5], batch_ns[5];
  for (int r = 0; r < 5; r++) {
    for (int b = 0; b < 2; b++) {
      if (ftruncate(ffd, 0) != 0 || lseek(ffd, 0, SEEK_SET) != 0) return 1;
      cad_log_batch(b == 1);
      double t0 = now_s();
      for (long i = 0; i < lines; i++) {
        nums[0].val = (uint64_t)i;
        CAD_LOG(CAD_LOG_INFO, "msg.accepted", &c, NULL);
        if (b == 1 && (i & 15) == 15) cad_log_flush();
      }
      cad_log_batch(false);
      (b ? batch_ns : direct_ns)[r] = (now_s() - t0) * 1e9 / (double)lines;
    }
  }
  qsort(direct_ns, 5, sizeof direct_ns[0], cmp);
  qsort(batch_ns, 5, sizeof batch_ns[0], cmp);
  printf("to a file: one write(2) per line %.0f ns/line; batched (16 lines per write) %.0f ns/line "
         "(%.2fx)\n",
         direct_ns[2], batch_ns[2], batch_ns[2] / direct_ns[2]);
  close(ffd);
  return 0;
}
