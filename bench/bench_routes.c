/* bench_routes.c - what routing costs, next to parsing and serializing.
 *
 *   build/bench/bench_routes [CONFIG [CHANNEL]]
 *
 * Default: the lab-to-ehr example (examples/lab-to-ehr/lab-to-ehr.yaml,
 * channel `lab`): an archive route without filters plus the EHR route with
 * 5 filters and 8 transforms (MSH-5/6, two copies and a set over OBX[*],
 * a LOINC mapping over OBX[*] from a CSV table, a set over OBX[*], a date
 * reformat).  The message is a 1.1 KB ORU^R01 (MSH PID PV1 OBR + 10 OBX + NTE)
 * whose every OBX is mapped, so both routes fire and the EHR copy is
 * transformed and serialized.
 *
 * Workloads per message, timed over ROUNDS rounds in which they take turns
 * (medians printed; BENCH_ONLY=c runs only one, for a profiler):
 *   (a) parse
 *   (b) parse + serialize (cad_hl7_serialize of the unchanged message)
 *   (c) parse + cad_routes_eval (filters, transforms, serialization of every
 *       output into the arena)
 *   (d) the same routes without their transforms
 *   (e) (c) with cad_routes_set_stepwise(): every step applied on its own,
 *       as before fused runs (routes_steps.c); (e)/(c) is what fusing gains
 * and the ratios: routing alone (c - a), and (c) against (b), the aim (issue
 * 16) being that routing adds at most 150% to parse-plus-serialize time.  One
 * thread.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_msgs.h"
#include "bench_util.h"
#include "cad_error.h"
#include "hl7.h"
#include "routes.h"
#include "yaml_doc.h"

#ifndef CAD_SOURCE_ROOT
#define CAD_SOURCE_ROOT "."
#endif

#define ROUNDS 15
#define ITERS 50000

static volatile size_t sink;

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, r;
  char *b = malloc(cap);
  while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) b = realloc(b, cap *= 2);
  }
  fclose(f);
  *len = n;
  return b;
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1] : CAD_SOURCE_ROOT "/examples/lab-to-ehr/lab-to-ehr.yaml";
  const char *channel = argc > 2 ? argv[2] : "lab";
  size_t ylen;
  char *ytext = read_all(config, &ylen);
  if (!ytext) {
    fprintf(stderr, "bench_routes: cannot read %s\n", config);
    return 1;
  }
  cad_yaml_doc_t *doc;
  char err[512];
  if (cad_yaml_parse(config, ytext, ylen, NULL, &doc, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  char base[4096];
  snprintf(base, sizeof base, "%s", config);
  char *sl = strrchr(base, '/');
  if (sl) *sl = 0;
  else strcpy(base, ".");
  const cad_yaml_node_t *dn = cad_yaml_get(doc->root, "destinations");
  const char *dests[64];
  size_t nd = 0;
  for (size_t i = 0; dn && i < dn->n && nd < 64; i++) dests[nd++] = dn->pairs[i].key->str;
  cad_buf_t errors = CAD_BUF_INIT;
  cad_tables_t *tables = NULL;
  cad_routes_t *routes = NULL;
  const cad_yaml_node_t *ch = cad_yaml_get(cad_yaml_get(doc->root, "channels"), channel);
  if (cad_tables_load(cad_yaml_get(doc->root, "tables"), base, &tables, &errors) ||
      cad_routes_compile(ch, tables, dests, nd, &routes, &errors)) {
    fprintf(stderr, "%s", cad_buf_cstr(&errors));
    return 1;
  }

  /* The same routes without their transforms: what the filters and the
   * fan-out cost alone. */
  cad_routes_t *filters_only = NULL;
  const cad_yaml_node_t *rn = cad_yaml_get(ch, "routes");
  if (rn && rn->type == CAD_YAML_SEQUENCE) {
    cad_yaml_node_t seq = *rn, *items[64], maps[64];
    cad_yaml_pair_t pairs[64][16];
    seq.items = items;
    for (size_t i = 0; i < rn->n && i < 64; i++) {
      const cad_yaml_node_t *r = rn->items[i];
      maps[i] = *r;
      maps[i].pairs = pairs[i];
      maps[i].n = 0;
      for (size_t k = 0; r->type == CAD_YAML_MAPPING && k < r->n && k < 16; k++)
        if (strcmp(r->pairs[k].key->str, "transform") != 0) pairs[i][maps[i].n++] = r->pairs[k];
      items[i] = &maps[i];
    }
    seq.n = rn->n < 64 ? rn->n : 64;
    errors.len = 0;
    if (cad_routes_compile(&seq, tables, dests, nd, &filters_only, &errors)) {
      fprintf(stderr, "%s", cad_buf_cstr(&errors));
      return 1;
    }
  }

  char msg[4096];
  size_t len;
  len = bench_lab_oru(msg, sizeof msg, "20240305143000", "LAB000101", true);
  cad_arena_t a;
  cad_arena_init(&a, 64 * 1024, 0);
  cad_buf_t out = CAD_BUF_INIT;
  /* Check once that the EHR route fires. */
  cad_route_result_t res;
  if (cad_routes_eval(routes, msg, len, NULL, &a, &res) || res.disposition != CAD_ROUTE_DELIVER ||
      res.nouts < 2) {
    fprintf(stderr, "bench_routes: the message was not routed to two destinations (%s: %s)\n",
            cad_route_disposition_name(res.disposition), res.diag.reason);
    return 1;
  }
  printf("bench_routes: %s, channel %s: %zu routes, message %zu bytes, %d x %d messages\n", config,
         channel, cad_routes_count(routes), len, ROUNDS, ITERS);

  /* Workloads are interleaved round by round, so that a busy machine slows
   * them alike; medians of the rounds, and the median of per-round ratios. */
  enum { NW = 5 };
  const char *labels[NW] = {"(a) parse", "(b) parse + serialize", "(c) parse + route (eval)",
                            "(d) parse + route, no transforms", "(e) parse + route, step by step"};
  double t[NW][ROUNDS], ratio_cb[ROUNDS], ratio_ec[ROUNDS], med[NW] = {0};
  /* BENCH_ONLY=a|b|c|d|e times one workload (for a profiler). */
  const char *only = getenv("BENCH_ONLY");
  bool run[NW];
  for (int w = 0; w < NW; w++)
    run[w] = (!only || !*only || *only == 'a' + w) && (w != 3 || filters_only);
  for (int r = 0; r < ROUNDS; r++) {
    for (int w = 0; w < NW; w++) {
      if (!run[w]) continue;
      const cad_routes_t *rr = w == 3 ? filters_only : routes;
      cad_routes_set_stepwise(routes, w == 4);
      double t0 = now_s();
      for (int k = 0; k < ITERS; k++) {
        cad_hl7_msg_t m;
        cad_arena_reset(&a);
        if (cad_hl7_parse(&m, msg, len, &a, NULL, NULL) != 0) abort();
        if (w == 1) {
          cad_buf_clear(&out);
          cad_hl7_serialize(&m, &out);
          sink += out.len;
        } else if (w >= 2) {
          cad_routes_eval(rr, msg, len, &m, &a, &res);
          sink += res.outs[res.nouts - 1].bytes.len;
        } else {
          sink += m.nsegs;
        }
      }
      t[w][r] = (now_s() - t0) / ITERS * 1e9;
    }
    ratio_cb[r] = run[1] && run[2] ? t[2][r] / t[1][r] : 0;
    ratio_ec[r] = run[2] && run[4] ? t[4][r] / t[2][r] : 0;
  }
  cad_routes_set_stepwise(routes, false);
  for (int w = 0; w < NW; w++) {
    if (!run[w]) continue;
    qsort(t[w], ROUNDS, sizeof t[w][0], cmp_d);
    med[w] = t[w][ROUNDS / 2];
    printf("  %-34s %6.0f ns/message  (min %.0f, max %.0f)\n", labels[w], med[w], t[w][0],
           t[w][ROUNDS - 1]);
  }
  qsort(ratio_cb, ROUNDS, sizeof ratio_cb[0], cmp_d);
  qsort(ratio_ec, ROUNDS, sizeof ratio_ec[0], cmp_d);
  if (run[0] && run[1] && run[2]) {
    printf("  routing alone (c - a): %.0f ns/message = %.2fx parse\n", med[2] - med[0],
           (med[2] - med[0]) / med[0]);
    printf("  (c) vs (b): %+.0f%% (median of rounds; aim: at most +150%%)\n",
           100.0 * (ratio_cb[ROUNDS / 2] - 1));
  }
  if (run[1] && run[3])
    printf("  (d) vs (b): %+.0f%% (filters and fan-out without transforms)\n",
           100.0 * (med[3] - med[1]) / med[1]);
  if (run[2] && run[4])
    printf("  fused runs: step by step (e) takes %.2fx the time of (c) (median of rounds)\n",
           ratio_ec[ROUNDS / 2]);
  cad_routes_free(filters_only);
  cad_buf_free(&out);
  cad_arena_free(&a);
  cad_routes_free(routes);
  cad_tables_free(tables);
  cad_buf_free(&errors);
  cad_yaml_free(doc);
  free(ytext);
  return 0;
}
