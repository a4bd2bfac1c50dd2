/* bench_parse.c - HL7 parse throughput.
 *
 *   build/bench/bench_parse [CORPUS_DIR]
 *
 * Workloads, each timed over several rounds (the median round is printed):
 *   (0) parse alone (segments and fields indexed)
 *   (a) parse + read PID-5.1 (decoded) + every OBX-5 (decoded)
 *   (b) parse + serialize (unchanged message)
 *   (c) parse + set MSH-5 and serialize (a changed message)
 * over a typical 1.4 KB ORU^R01 (MSH PID PV1 ORC OBR + 10 OBX), and over
 * every top-level message of the shared corpus when its directory is given
 * (default ../shared/corpus; skipped when absent).  One thread, one core.
 * Figures are MB/s of input (1 MB = 1e6 bytes) and messages/s.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_msgs.h"
#include "bench_util.h"
#include "cad_error.h"
#include "hl7.h"

#define ROUNDS 7

typedef struct {
  char **msg;
  size_t *len;
  size_t n;
  size_t bytes;
} set_t;

static volatile size_t sink;

static size_t work_read(const set_t *s, cad_arena_t *a, const cad_hl7_path_t *pid51,
                        const cad_hl7_path_t *obx5) {
  size_t acc = 0;
  for (size_t i = 0; i < s->n; i++) {
    cad_hl7_msg_t m;
    cad_arena_reset(a);
    if (cad_hl7_parse(&m, s->msg[i], s->len[i], a, NULL, NULL) != 0) continue;
    cad_hl7_match_t mt;
    cad_str_t v;
    if (cad_hl7_get(&m, pid51, &mt) && cad_hl7_decode(mt.d, mt.raw, a, &v)) acc += v.len;
    cad_hl7_iter_t it;
    cad_hl7_iter_init(&it, &m, obx5);
    while (cad_hl7_iter_next(&it, &mt))
      if (cad_hl7_decode(mt.d, mt.raw, a, &v)) acc += v.len;
  }
  return acc;
}

static size_t work_parse(const set_t *s, cad_arena_t *a) {
  size_t acc = 0;
  for (size_t i = 0; i < s->n; i++) {
    cad_hl7_msg_t m;
    cad_arena_reset(a);
    if (cad_hl7_parse(&m, s->msg[i], s->len[i], a, NULL, NULL) == 0) acc += m.nsegs;
  }
  return acc;
}

static size_t work_serialize(const set_t *s, cad_arena_t *a, cad_buf_t *out,
                             const cad_hl7_path_t *set) {
  size_t acc = 0;
  for (size_t i = 0; i < s->n; i++) {
    cad_hl7_msg_t m;
    cad_arena_reset(a);
    if (cad_hl7_parse(&m, s->msg[i], s->len[i], a, NULL, NULL) != 0) continue;
    if (set) cad_hl7_set(&m, set, "EHR", 3, 0);
    cad_buf_clear(out);
    cad_hl7_serialize(&m, out);
    acc += out->len;
  }
  return acc;
}

static void run(const char *name, const set_t *s, size_t target_bytes) {
  cad_arena_t a;
  cad_arena_init(&a, 64 * 1024, 0);
  cad_buf_t out = CAD_BUF_INIT;
  cad_hl7_path_t pid51, obx5, msh5;
  cad_hl7_path_parse("PID-5.1", 7, &pid51, NULL, NULL);
  cad_hl7_path_parse("OBX[*]-5", 8, &obx5, NULL, NULL);
  cad_hl7_path_parse("MSH-5", 5, &msh5, NULL, NULL);
  size_t reps = target_bytes / (s->bytes ? s->bytes : 1) + 1;
  const char *labels[4] = {"(0) parse alone", "(a) parse + PID-5.1 + OBX[*]-5",
                           "(b) parse + serialize", "(c) parse + set MSH-5 + serialize"};
  printf("%s: %zu messages, %zu bytes, x%zu per round, %d rounds\n", name, s->n, s->bytes, reps,
         ROUNDS);
  for (int w = 0; w < 4; w++) {
    double t[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
      double t0 = now_s();
      for (size_t k = 0; k < reps; k++) {
        if (w == 0) sink += work_parse(s, &a);
        else if (w == 1) sink += work_read(s, &a, &pid51, &obx5);
        else sink += work_serialize(s, &a, &out, w == 3 ? &msh5 : NULL);
      }
      t[r] = now_s() - t0;
    }
    qsort(t, ROUNDS, sizeof t[0], cmp_d);
    double med = t[ROUNDS / 2];
    double mb = (double)s->bytes * (double)reps / 1e6;
    double msgs = (double)s->n * (double)reps;
    printf("  %-36s %9.1f MB/s %12.0f msg/s  (median %.3f s, min %.3f, max %.3f)\n", labels[w],
           mb / med, msgs / med, med, t[0], t[ROUNDS - 1]);
  }
  cad_buf_free(&out);
  cad_arena_free(&a);
}

static void add(set_t *s, const char *p, size_t n) {
  s->msg = realloc(s->msg, (s->n + 1) * sizeof *s->msg);
  s->len = realloc(s->len, (s->n + 1) * sizeof *s->len);
  s->msg[s->n] = malloc(n);
  memcpy(s->msg[s->n], p, n);
  s->len[s->n] = n;
  s->n++;
  s->bytes += n;
}

static void oru(set_t *s) {
  char buf[4096];
  add(s, buf, bench_oru_r01(buf, sizeof buf));
}

static void corpus(set_t *s, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l < 5 || strcmp(e->d_name + l - 4, ".hl7") != 0) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    add(s, buf, n);
  }
  closedir(d);
}

int main(int argc, char **argv) {
  set_t one = {0};
  oru(&one);
  run("typical ORU^R01", &one, 200u << 20);
  const char *dir = argc > 1 ? argv[1] : "../shared/corpus";
  set_t c = {0};
  corpus(&c, dir);
  if (c.n) run("shared corpus (top-level files)", &c, 100u << 20);
  else printf("corpus: skipped (%s not found)\n", dir);
  printf("checksum %zu\n", (size_t)sink);
  return 0;
}
