/* bench_fhir.c - HL7 v2 to FHIR R4 conversions per second.
 *
 *   build/bench/bench_fhir [SECONDS_PER_ROUND]
 *
 * On the benchmark ORU^R01 (bench_msgs.h: MSH PID PV1 ORC OBR + 10 OBX), one
 * thread, in the same run and interleaved round by round:
 *   (ref)  parse + serialize (the er7 format's work)
 *   (a)    parse + convert to the Bundle (a jansson tree), no output
 *   (b)    parse + convert + write the compact JSON (format: fhir)
 *   (c)    parse + the json format, (d) parse + the xml format
 *   (e)    jansson's json_dumpb alone, of the Bundle's tree built once: what
 *          jansson's encoder costs of (b) (its writing of the JSON text,
 *          which this project does not write itself)
 * Each figure is the median of 7 rounds, in messages per second of wall
 * time and per second of this thread's CPU time (the fair figure on a
 * shared machine), with its ratio to (ref).  The aim for (b): 50,000/s on
 * one core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_msgs.h"
#include "bench_util.h"
#include "cad_error.h"
#include "fhir.h"

#define ROUNDS 7

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile size_t sink;
static char msg[4096];
static size_t msglen;
static const cad_fhir_system_t systems[] = {{"GH", "urn:oid:2.16.840.1.113883.3.72"}};
static const cad_fhir_opts_t opts = {systems, 1, NULL, false};

static void w_ref(cad_arena_t *a, cad_buf_t *b) {
  cad_hl7_msg_t m;
  cad_arena_reset(a);
  b->len = 0;
  if (cad_hl7_parse(&m, msg, msglen, a, NULL, NULL) == 0 && cad_hl7_serialize(&m, b) == 0)
    sink += b->len;
}

static void w_convert(cad_arena_t *a, cad_buf_t *b) {
  cad_hl7_msg_t m;
  cad_arena_reset(a);
  json_t *j = NULL;
  if (cad_hl7_parse(&m, msg, msglen, a, NULL, NULL) == 0 &&
      cad_fhir_convert(&m, &opts, &j, NULL) == 0)
    sink += json_array_size(json_object_get(j, "entry"));
  json_decref(j);
  (void)b;
}

static void w_fhir(cad_arena_t *a, cad_buf_t *b) {
  (void)a;
  b->len = 0;
  if (cad_render(CAD_FORMAT_FHIR, msg, msglen, &opts, b, NULL) == 0) sink += b->len;
}

static void w_json(cad_arena_t *a, cad_buf_t *b) {
  (void)a;
  b->len = 0;
  if (cad_render(CAD_FORMAT_JSON, msg, msglen, &opts, b, NULL) == 0) sink += b->len;
}

static json_t *built; /* the Bundle's tree, for (e) */
static char dumped[1 << 16];

static void w_dumpb(cad_arena_t *a, cad_buf_t *b) {
  (void)a;
  (void)b;
  sink += json_dumpb(built, dumped, sizeof dumped, JSON_COMPACT | JSON_REAL_PRECISION(15));
}

static void w_xml(cad_arena_t *a, cad_buf_t *b) {
  (void)a;
  b->len = 0;
  if (cad_render(CAD_FORMAT_XML, msg, msglen, &opts, b, NULL) == 0) sink += b->len;
}

typedef void (*work_fn)(cad_arena_t *, cad_buf_t *);

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 0.3;
  if (secs <= 0) secs = 0.3;
  msglen = bench_oru_r01(msg, sizeof msg);
  enum { NW = 6 };
  static const char *labels[NW] = {"(ref) parse + serialize",
                                   "(a) parse + convert (tree)",
                                   "(b) parse + convert + JSON (fhir)",
                                   "(c) json format",
                                   "(d) xml format",
                                   "(e) jansson json_dumpb of the tree"};
  work_fn fns[NW] = {w_ref, w_convert, w_fhir, w_json, w_xml, w_dumpb};
  double rate[NW][ROUNDS], crate[NW][ROUNDS];
  cad_arena_t a;
  cad_arena_init(&a, 65536, 0);
  cad_buf_t b = CAD_BUF_INIT;
  cad_buf_t out = CAD_BUF_INIT;
  if (cad_render(CAD_FORMAT_FHIR, msg, msglen, &opts, &out, NULL) != 0) {
    fprintf(stderr, "bench_fhir: the benchmark message does not convert\n");
    return 1;
  }
  printf("message: ORU^R01, %zu bytes; Bundle: %zu bytes\n", msglen, out.len);
  {
    cad_hl7_msg_t m;
    if (cad_hl7_parse(&m, msg, msglen, &a, NULL, NULL) != 0 ||
        cad_fhir_convert(&m, &opts, &built, NULL) != 0 ||
        json_dumpb(built, dumped, sizeof dumped, JSON_COMPACT | JSON_REAL_PRECISION(15)) !=
            out.len) {
      fprintf(stderr, "bench_fhir: json_dumpb does not give the fhir format's bytes\n");
      return 1;
    }
  }
  for (int r = 0; r < ROUNDS; r++) {
    for (int k = 0; k < NW; k++) {
      size_t n = 0;
      double c0 = thread_cpu_s(), t0 = now_s(), t;
      do {
        for (int i = 0; i < 200; i++) fns[k](&a, &b);
        n += 200;
        t = now_s();
      } while (t - t0 < secs);
      rate[k][r] = (double)n / (t - t0);
      crate[k][r] = (double)n / (thread_cpu_s() - c0);
    }
  }
  double med[NW], cmed[NW];
  for (int k = 0; k < NW; k++) {
    qsort(rate[k], ROUNDS, sizeof rate[k][0], cmp_d);
    qsort(crate[k], ROUNDS, sizeof crate[k][0], cmp_d);
    med[k] = rate[k][ROUNDS / 2];
    cmed[k] = crate[k][ROUNDS / 2];
  }
  printf("%-36s %12s %8s %14s %8s %10s\n", "median of 7 rounds", "msg/s wall", "vs ref",
         "msg/s of CPU", "vs ref", "us of CPU");
  for (int k = 0; k < NW; k++)
    printf("%-36s %12.0f %7.4fx %14.0f %7.4fx %10.1f\n", labels[k], med[k], med[k] / med[0],
           cmed[k], cmed[k] / cmed[0], 1e6 / cmed[k]);
  printf(
      "of (b)'s %.1f us per Bundle: jansson's json_dumpb %.1f us (e), parse + tree + its "
      "release %.1f us (a)\n",
      1e6 / cmed[2], 1e6 / cmed[5], 1e6 / cmed[1]);
  printf("aim (b) >= 50000 msg/s on one core: %s (%.0f per CPU-second)\n",
         cmed[2] >= 50000 ? "met" : "NOT met", cmed[2]);
  printf("checksum %zu\n", (size_t)sink);
  json_decref(built);
  cad_buf_free(&b);
  cad_buf_free(&out);
  cad_arena_free(&a);
  return 0;
}
