/* harness.h - Caduceus' small unit-test harness.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_STR(got, len, "expected"); }
 *   ...
 *   TEST_MAIN()
 *
 * Every test runs in its own child process (fork) with a timeout, so a crash
 * or a hang in one test is reported as that test's failure and the others
 * still run.  Set CAD_TEST_NOFORK=1 to run in-process (for gdb).  A test
 * name given on the command line runs only the tests whose names contain it.
 * The last line printed is "N passed, N failed".
 */
#ifndef CAD_TEST_HARNESS_H
#define CAD_TEST_HARNESS_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*cad_test_fn)(void);

struct cad_test {
  const char *name;
  cad_test_fn fn;
};

#define CAD_TEST_MAX 512
static struct cad_test cad_tests[CAD_TEST_MAX];
static int cad_ntests;
static int cad_test_failures; /* within the current test (child) */

#define TEST(name)                                                     \
  static void test_##name(void);                                       \
  __attribute__((constructor)) static void register_##name(void) {     \
    if (cad_ntests < CAD_TEST_MAX)                                     \
      cad_tests[cad_ntests++] = (struct cad_test){#name, test_##name}; \
  }                                                                    \
  static void test_##name(void)

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      cad_test_failures++;                                                       \
    }                                                                            \
  } while (0)

/* Like CHECK, but stops the test (for conditions later checks depend on). */
#define REQUIRE(cond)                                                              \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
      cad_test_failures++;                                                         \
      return;                                                                      \
    }                                                                              \
  } while (0)

#define CHECK_INT(got, want)                                                                     \
  do {                                                                                           \
    long long g_ = (long long)(got), w_ = (long long)(want);                                     \
    if (g_ != w_) {                                                                              \
      fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #got, g_, w_); \
      cad_test_failures++;                                                                       \
    }                                                                                            \
  } while (0)

/* Compare a (pointer, length) string with a NUL-terminated expectation. */
#define CHECK_STRN(p, n, want)                                                              \
  do {                                                                                      \
    const char *p_ = (const char *)(p);                                                     \
    size_t n_ = (size_t)(n);                                                                \
    const char *w_ = (want);                                                                \
    if (n_ != strlen(w_) || (n_ && memcmp(p_, w_, n_) != 0)) {                              \
      fprintf(stderr, "  %s:%d: %s is \"%.*s\", expected \"%s\"\n", __FILE__, __LINE__, #p, \
              (int)n_, p_ ? p_ : "", w_);                                                   \
      cad_test_failures++;                                                                  \
    }                                                                                       \
  } while (0)

#define CHECK_STR(got, want)                   \
  do {                                         \
    const char *g_ = (got);                    \
    CHECK_STRN(g_, g_ ? strlen(g_) : 0, want); \
  } while (0)

static int cad_test_run_one(const struct cad_test *t, int nofork, unsigned timeout) {
  if (nofork) {
    cad_test_failures = 0;
    t->fn();
    return cad_test_failures == 0;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 0;
  }
  if (pid == 0) {
    alarm(timeout);
    cad_test_failures = 0;
    t->fn();
    fflush(stdout);
    fflush(stderr);
    _exit(cad_test_failures == 0 ? 0 : 1);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
  }
  if (WIFSIGNALED(st)) {
    fprintf(stderr, "  test %s died with signal %d%s\n", t->name, WTERMSIG(st),
            WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
    return 0;
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int cad_test_main(int argc, char **argv) {
  int nofork = getenv("CAD_TEST_NOFORK") != NULL;
  unsigned timeout = 60;
  const char *t_env = getenv("CAD_TEST_TIMEOUT");
  if (t_env) timeout = (unsigned)atoi(t_env);
  int passed = 0, failed = 0;
  for (int i = 0; i < cad_ntests; i++) {
    if (argc > 1 && !strstr(cad_tests[i].name, argv[1])) continue;
    int ok = cad_test_run_one(&cad_tests[i], nofork, timeout);
    printf("%s - %s\n", ok ? "ok" : "FAIL", cad_tests[i].name);
    if (ok) passed++;
    else failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

#define TEST_MAIN() \
  int main(int argc, char **argv) { return cad_test_main(argc, argv); }

/* Read a whole file into a malloc'd buffer (caller frees). NULL on error. */
static inline char *cad_test_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t r;
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) *len = n;
  return buf;
}

#endif
