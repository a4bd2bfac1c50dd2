/* bench_spin.c - background work that does nothing, the yardstick for the
 * archive writer's CPU beside the message path.
 *
 *   bench_spin PERCENT
 *
 * Spins PERCENT of every 20 ms and sleeps the rest, at SCHED_IDLE (it runs
 * only when a CPU would otherwise idle), until killed.  bench_archive.sh
 * (SPIN=PERCENT) runs the engine without the archive beside it: what the
 * throughput loses to work of no use at the lowest priority is what any
 * thread of that CPU share costs the message path on this machine.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

int main(int argc, char **argv) {
  int pct = argc == 2 ? atoi(argv[1]) : -1;
  if (pct < 1 || pct > 100) {
    fprintf(stderr, "usage: bench_spin PERCENT (1-100)\n");
    return 2;
  }
  struct sched_param sp = {0};
  if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0) {
    perror("bench_spin: SCHED_IDLE");
    return 1;
  }
  long long busy = 200LL * pct, idle = 20000 - busy;
  volatile unsigned long spins = 0;
  for (;;) {
    long long end = now_us() + busy;
    while (now_us() < end) spins++;
    if (idle > 0) usleep((useconds_t)idle);
  }
}
