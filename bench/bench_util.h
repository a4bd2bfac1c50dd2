/* bench_util.h - the timing helpers every benchmark shares. */
#ifndef CAD_BENCH_UTIL_H
#define CAD_BENCH_UTIL_H

#include <time.h>

/* Monotonic seconds. */
static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* qsort comparator for doubles (medians, percentiles). */
static inline int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#endif
