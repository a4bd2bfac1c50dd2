/* bench_charset.c - what character set conversion costs per message.
 *
 *   build/bench/bench_charset
 *
 * A 1.4 KB ORU^R01 (MSH PID PV1 ORC OBR + 10 OBX) with Latin-1 names and
 * comments, MSH-18 8859/1.  Workloads, each timed over several rounds (the
 * median round is printed), one thread:
 *   (ref) parse + serialize the message (what every message costs anyway)
 *   (in)  parse + cad_charset_msg_in (8859/1 to UTF-8) + parse the UTF-8
 *   (rt)  (in) + cad_charset_msg_out back to 8859/1 (the Oracle Health
 *         path: Latin-1 in, routes in UTF-8, Latin-1 out)
 *   (utf) the same message in UTF-8 (MSH-18 UNICODE UTF-8): parse +
 *         msg_in (a check, no copy) + msg_out without `encoding:` (nothing)
 * Each conversion opens and closes its own iconv descriptor (thread safe,
 * no shared state): that is part of the figure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cad_error.h"
#include "hl7.h"
#include "hl7_charset.h"

#define ROUNDS 7
#define N 20000

static volatile size_t sink;

static size_t build(char *buf, size_t cap, bool utf8) {
  const char *e_acute = utf8 ? "\xC3\xA9" : "\xE9", *u_uml = utf8 ? "\xC3\x9C" : "\xDC";
  size_t n = (size_t)snprintf(
      buf, cap,
      "MSH|^~\\&|HNAM|CERNER|LIS|LAB|20240305143000||ORU^R01|Q150084616T145947960|P|2.3||||||%s\r"
      "PID|1||1234567^^^CITY_MRN^MRN~7654321^^^CMRN^CMRN||M%sLLER^JOS%s^^^^^Current||19580211|M\r"
      "PV1|1|Inpatient|4WEST^401^A^CITYHOSP||||1234^M%sdecin^Ren%s\r"
      "ORC|RE|ORD4411|LAB4411\r"
      "OBR|1|ORD4411|LAB4411|BMP^Basic metabolic panel^L|||20240305121045||||||||||||||||F\r",
      utf8 ? "UNICODE UTF-8" : "8859/1", u_uml, e_acute, e_acute, e_acute);
  for (int i = 1; i <= 10 && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n,
                          "OBX|%d|NM|CODE%d^Analyte num%sro %d^L||%d.%d|mmol/L|3.5-5.1|N|||F|||"
                          "20240305130000||R%ssultat valid%s\r",
                          i, i, e_acute, i, 4 + i, i, e_acute, e_acute);
  return n;
}

typedef size_t (*work_fn)(const char *p, size_t len, cad_arena_t *a);

static size_t w_ref(const char *p, size_t len, cad_arena_t *a) {
  cad_hl7_msg_t m;
  cad_str_t out;
  if (cad_hl7_parse(&m, p, len, a, NULL, NULL) || cad_hl7_serialize_span(&m, a, &out)) abort();
  return out.len;
}

static size_t w_in(const char *p, size_t len, cad_arena_t *a, cad_str_t *u, int *src) {
  cad_hl7_msg_t m, c;
  cad_hl7_diag_t dg;
  if (cad_hl7_parse(&m, p, len, a, NULL, NULL) || cad_charset_msg_in(&m, 0, a, u, src, &dg))
    abort();
  if (u->p != p && cad_hl7_parse(&c, u->p, u->len, a, NULL, NULL)) abort();
  return u->len;
}

static size_t w_in_only(const char *p, size_t len, cad_arena_t *a) {
  cad_str_t u;
  int src;
  return w_in(p, len, a, &u, &src);
}

static size_t w_rt(const char *p, size_t len, cad_arena_t *a) {
  cad_str_t u, o;
  int src;
  cad_hl7_diag_t dg;
  w_in(p, len, a, &u, &src);
  if (cad_charset_msg_out(u, src, 0, CAD_CS_REJECT, a, &o, &dg)) abort();
  if (o.len != len || memcmp(o.p, p, len)) abort(); /* byte for byte */
  return o.len;
}

static double run(work_fn f, const char *p, size_t len) {
  cad_arena_t a;
  cad_arena_init(&a, 65536, 0);
  double t[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    double t0 = now_s();
    size_t acc = 0;
    for (int i = 0; i < N; i++) {
      cad_arena_reset(&a);
      acc += f(p, len, &a);
    }
    t[r] = (now_s() - t0) / N * 1e6;
    sink += acc;
  }
  cad_arena_free(&a);
  qsort(t, ROUNDS, sizeof t[0], cmp_d);
  return t[ROUNDS / 2];
}

int main(void) {
  static char l1[4096], u8[4096];
  size_t nl = build(l1, sizeof l1, false), nu = build(u8, sizeof u8, true);
  double ref = run(w_ref, l1, nl);
  double in = run(w_in_only, l1, nl);
  double rt = run(w_rt, l1, nl);
  double utf = run(w_rt, u8, nu);
  printf("bench_charset: %zu-byte ORU^R01, median of %d rounds of %d messages\n", nl, ROUNDS, N);
  printf("  ref  parse + serialize                        %7.2f us/message\n", ref);
  printf("  in   parse + 8859/1 to UTF-8 + parse UTF-8     %7.2f us/message (%.2fx ref)\n", in,
         in / ref);
  printf("  rt   in + back to 8859/1 (byte for byte)       %7.2f us/message (%.2fx ref)\n", rt,
         rt / ref);
  printf("  utf  UTF-8 message, no encoding: (checks only) %7.2f us/message (%.2fx ref)\n", utf,
         utf / ref);
  return 0;
}
