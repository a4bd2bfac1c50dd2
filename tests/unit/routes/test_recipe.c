/* test_recipe.c - runs of steps compiled into recipes (routes/routes_recipe.c)
 * against the step-by-step reference (cad_routes_set_stepwise).
 *
 * A recipe applies a run of component-level sets, copies and maps, and of
 * whole-field sets and dates, to one segment occurrence at a time, and the
 * overlay writes its components straight into the output with fixed-size
 * moves.  Every route here is evaluated both ways and must give the same
 * disposition, error and bytes, on messages chosen for the edges: fields
 * with fewer or more components than the steps name, more than 32
 * components, repetitions, escapes, empty and null ("") components, absent
 * fields, a truncation character declared in MSH-2, table values and set
 * values that need escaping, fields that end within 16 bytes of the end of
 * the message (the fixed-size moves must not read past it: ASan checks), and
 * other delimiters (where no recipe runs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "harness.h"
#include "routes.h"
#include "routes_int.h"
#include "yaml_doc.h"

static const char *const dests[] = {"a", "b"};

typedef struct fx {
  cad_yaml_doc_t *doc;
  cad_tables_t *tables;
  cad_routes_t *r;
  cad_buf_t err;
  cad_arena_t arena;
} fx_t;

static int fx_compile(fx_t *f, const char *yaml) {
  memset(f, 0, sizeof *f);
  cad_arena_init(&f->arena, 4096, 0);
  char perr[256];
  int rc = cad_yaml_parse("t.yaml", yaml, strlen(yaml), NULL, &f->doc, perr, sizeof perr);
  if (rc) {
    fprintf(stderr, "  yaml: %s\n", perr);
    return rc;
  }
  rc = cad_tables_load(cad_yaml_get(f->doc->root, "tables"), "/tmp", &f->tables, &f->err);
  if (rc) return rc;
  return cad_routes_compile(cad_yaml_get(f->doc->root, "channel"), f->tables, dests, 2, &f->r,
                            &f->err);
}

static void fx_free(fx_t *f) {
  cad_routes_free(f->r);
  cad_tables_free(f->tables);
  cad_yaml_free(f->doc);
  cad_buf_free(&f->err);
  cad_arena_free(&f->arena);
}

/* What one evaluation gave. */
typedef struct outcome {
  int rc, disposition, step, route, hl7;
  uint32_t segment, field;
  char reason[96];
  char bytes[8192]; /* every output: destination index, then its bytes */
  size_t len;
} outcome_t;

/* Route the `len` bytes at msg (copied into a buffer of exactly that size,
 * so that reading past the message is an ASan error). */
static void eval(fx_t *f, const char *msg, size_t len, bool stepwise, outcome_t *o) {
  memset(o, 0, sizeof *o);
  char *in = malloc(len ? len : 1);
  REQUIRE(in != NULL);
  memcpy(in, msg, len);
  cad_route_result_t res;
  cad_routes_set_stepwise(f->r, stepwise);
  cad_arena_reset(&f->arena);
  o->rc = cad_routes_eval(f->r, in, len, NULL, &f->arena, &res);
  o->disposition = (int)res.disposition;
  o->step = res.step;
  o->route = res.route;
  o->hl7 = res.diag.hl7_code;
  o->segment = res.diag.segment;
  o->field = res.diag.field;
  snprintf(o->reason, sizeof o->reason, "%s", res.diag.reason);
  for (size_t i = 0; i < res.nouts; i++) {
    cad_str_t b = res.outs[i].bytes;
    REQUIRE(o->len + b.len + 1 <= sizeof o->bytes);
    o->bytes[o->len++] = (char)('0' + res.outs[i].dest);
    memcpy(o->bytes + o->len, b.p, b.len);
    o->len += b.len;
  }
  free(in);
}

static bool same(const outcome_t *a, const outcome_t *b) {
  return a->rc == b->rc && a->disposition == b->disposition && a->step == b->step &&
         a->route == b->route && a->hl7 == b->hl7 && a->segment == b->segment &&
         a->field == b->field && strcmp(a->reason, b->reason) == 0 && a->len == b->len &&
         memcmp(a->bytes, b->bytes, a->len) == 0;
}

#define TABLES                                                                               \
  "tables:\n  loinc: { values: { GLU: 2345-7, K: 2823-3, NA: \"2951-2\", \"A&B\": \"x^y\", " \
  "\"\\\"\": quote, LONGER_THAN_SIXTEEN_BYTES: \"a value longer than sixteen bytes\" } }\n"

/* Messages ending their segments with \r (\n where written), given with
 * their exact length (some end without a terminator). */
static const char *const msgs[] = {
    "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305143000||ORU^R01|C1|P|2.5.1\r"
    "PID|1||123^^^HOSP^MR||Doe^Jane\r"
    "OBR|1|O1|F1|BMP|||20240305121045\r"
    "OBX|1|NM|GLU^Glucose^L||98|mg/dL|||||F|||20240305130000\r"
    "NTE|1||note\r"
    "OBX|2|NM|K^Potassium^L^x^y^z^w||4.1|mmol/L|||||F|||2024030513\r"
    "OBX|3|NM|NA||140\r"
    "OBX|4|ST|||\r"
    "OBX|5|NM|\"\"^Null||1\r"
    "OBX|6|NM|^Empty^L||1\r"
    "OBX|7|NM|A\\T\\B^Escaped^L~K^Second||1\r"
    "OBX|8|NM|LONGER_THAN_SIXTEEN_BYTES^A long code name here^L||1\r"
    "OBX|9|NM|UNKNOWN^Not mapped^L||1|||||||||notadate\r",
    /* a truncation character declared; \n terminators; the last field of
     * the message within 16 bytes of its end, without a terminator */
    "MSH|^~\\&#|LIS|LAB|EHR|HOSP|20240305143000||ORU^R01|C2|P|2.7\n"
    "OBR|1|O1|F1|BMP|||202403051210\n"
    "OBX|1|NM|GLU^Gl#ucose^L||98\n"
    "OBX|2|NM|K^P",
    /* more than 32 components, a field of one character at the very end */
    "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C3|P|2.5\r"
    "OBX|1|NM|K^a^b^c^d^e^f^g^h^i^j^k^l^m^n^o^p^q^r^s^t^u^v^w^x^y^z^1^2^3^4^5^6^7^8||1\r"
    "OBX|2|NM|G",
    /* other delimiters: no recipe, the step-by-step fused form */
    ("MSH$%~\\&$A$B$$$2024$$ORU%R01$C4$P$2.5\rOBR$1$O$F$P$$$20240305\r"
     "OBX$1$NM$GLU%Glucose%L$$98\rOBX$2$NM$K%P$$4.1\r"),
    /* only MSH and one OBX whose field 3 is absent */
    "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C5|P|2.5\rOBX|1|NM\r",
    /* dates with a zone, a fraction, fewer parts than a precision names,
     * exactly its parts (format_date writes some as the text's own digits) */
    "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C6|P|2.5\r"
    "OBR|1|O1|F1|BMP|||202403051210+0100\r"
    "OBX|1|NM|GLU^G^L||1|||||||||202403051300+0100\r"
    "OBX|2|NM|K^P^L||1|||||||||20240305130000.12\r"
    "OBX|3|NM|NA^S^L||1|||||||||2024\r"
    "OBX|4|NM|NA^S^L||1|||||||||20240305130000-0530\r"
    "OBX|5|NM|NA^S^L||1|||||||||202403051300\r"
    "OBX|6|NM|NA^S^L||1|||||||||20240305",
};

/* Steps a recipe takes (and a few that end a run or need the tree). */
static const char *const pool[] = {
    "{ copy: OBX-3.1, to: \"OBX[*]-3.4\" }",
    "{ copy: OBX-3.2, to: \"OBX[*]-3.5\" }",
    "{ copy: OBX-3.9, to: \"OBX[*]-3.2\" }",
    "{ copy: OBX-5.1, to: \"OBX[*]-3.7\" }",
    "{ copy: OBX-3.1.2, to: \"OBX[*]-3.3\" }",
    "{ set: \"OBX[*]-3.6\", value: L }",
    "{ set: \"OBX[*]-3.3\", value: LN }",
    "{ set: \"OBX[*]-3.2\", value: \"a^b&c\" }",
    "{ set: \"OBX[*]-3.8\", value: \"x#y\" }",
    "{ set: \"OBX[*]-3.33\", value: far }",
    "{ set: \"OBX[*]-3.1\", value: \"GLU\" }",
    "{ map: \"OBX[*]-3.1\", table: loinc }",
    "{ map: \"OBX[*]-3.1\", table: loinc, default: reject }",
    "{ map: \"OBX[*]-3.1\", table: loinc, default: empty }",
    "{ map: \"OBX[*]-3.1\", table: loinc, default: { value: \"U^K\" } }",
    "{ map: \"OBX[*]-3.4\", table: loinc, default: UNK }",
    "{ map: \"OBX[*]-3.9\", table: loinc, default: UNK }",
    "{ set: \"OBX[*]-5\", value: \"v|w\" }",
    "{ set: \"OBX[*]-9\", value: nine }",
    "{ format_date: \"OBX[*]-14\", precision: minute }",
    "{ format_date: \"OBX[*]-14\", precision: second }",
    "{ format_date: \"OBX[*]-14\", precision: year }",
    "{ format_date: \"OBX[*]-14\", format: \"%Y-%m-%d\" }",
    "{ format_date: OBR-7, precision: minute }",
    "{ set: MSH-5, value: EHR }",
    "{ set: MSH-6, value: CITY_HOSP_EHR }",
    "{ copy: OBX-3, to: \"OBX[*]-9\" }",
    "{ upper: \"OBX[*]-3.2\" }",
};

TEST(recipes_match_stepwise) {
  const size_t npool = sizeof pool / sizeof pool[0], nmsg = sizeof msgs / sizeof msgs[0];
  unsigned seed = 2024;
  int compared = 0, delivered = 0, errors = 0, recipes = 0;
  for (int round = 0; round < 500; round++) {
    char steps[2][2048];
    for (int r = 0; r < 2; r++) {
      size_t o = (size_t)snprintf(steps[r], sizeof steps[r], "[ ");
      int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 7;
      for (int k = 0; k < n; k++) {
        seed = seed * 1103515245u + 12345u;
        o += (size_t)snprintf(steps[r] + o, sizeof steps[r] - o, "%s%s", k ? ", " : "",
                              pool[(seed >> 16) % npool]);
      }
      snprintf(steps[r] + o, sizeof steps[r] - o, " ]");
    }
    char yaml[6144];
    snprintf(yaml, sizeof yaml,
             TABLES
             "channel:\n  routes:\n"
             "    - { transform: %s, to: a, continue: true }\n"
             "    - { transform: %s, to: b }\n",
             steps[0], steps[1]);
    fx_t f;
    if (fx_compile(&f, yaml) != 0) {
      fprintf(stderr, "  compile failed: %s\n", cad_buf_cstr(&f.err));
      CHECK(0);
      fx_free(&f);
      continue;
    }
    for (size_t i = 0; i < cad_routes_count(f.r); i++)
      for (size_t k = 0; k < f.r->routes[i].nsteps; k++)
        recipes += f.r->routes[i].steps[k].recipe != NULL;
    for (size_t m = 0; m < nmsg; m++) {
      static outcome_t a, b;
      eval(&f, msgs[m], strlen(msgs[m]), false, &a);
      eval(&f, msgs[m], strlen(msgs[m]), true, &b);
      if (!same(&a, &b)) {
        fprintf(stderr,
                "  steps %s / %s, message %zu:\n  fused    %d %s [%.*s]\n"
                "  stepwise %d %s [%.*s]\n",
                steps[0], steps[1], m, a.disposition, a.reason, (int)a.len, a.bytes, b.disposition,
                b.reason, (int)b.len, b.bytes);
        CHECK(0);
      }
      compared++;
      if (a.disposition == CAD_ROUTE_DELIVER) delivered++;
      else errors++;
    }
    fx_free(&f);
  }
  /* Recipes ran, and both outcomes were seen. */
  CHECK(recipes > 300);
  CHECK(delivered > 500);
  CHECK(errors > 100);
  fprintf(stderr, "  %d comparisons: %d delivered, %d errors; %d recipes\n", compared, delivered,
          errors, recipes);
}

/* The first step of route 0's first run has a recipe. */
static int planned(const char *steps) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml, TABLES "channel:\n  routes:\n    - { transform: %s, to: a }\n",
           steps);
  fx_t f;
  int rc = fx_compile(&f, yaml);
  int got = rc == 0 ? f.r->routes[0].steps[0].recipe != NULL : -1;
  if (rc) fprintf(stderr, "  %s", cad_buf_cstr(&f.err));
  fx_free(&f);
  return got;
}

TEST(recipes_planned_for_field_runs) {
  /* The OBX run of lab-to-ehr. */
  CHECK_INT(
      planned("[ { copy: OBX-3.1, to: \"OBX[*]-3.4\" }, { copy: OBX-3.2, to: \"OBX[*]-3.5\" },"
              " { set: \"OBX[*]-3.6\", value: L }, { map: \"OBX[*]-3.1\", table: loinc },"
              " { set: \"OBX[*]-3.3\", value: LN } ]"),
      1);
  /* Whole fields: sets and a date. */
  CHECK_INT(planned("[ { set: MSH-5, value: EHR }, { set: MSH-6, value: H } ]"), 1);
  CHECK_INT(planned("[ { format_date: OBR-7, precision: minute } ]"), 1);
  /* A field written whole and also by a component step: not a recipe. */
  CHECK_INT(planned("[ { set: \"OBX[*]-3\", value: X }, { set: \"OBX[*]-3.2\", value: Y } ]"), 0);
  CHECK_INT(planned("[ { set: \"OBX[*]-3.2\", value: Y }, { format_date: \"OBX[*]-3\", "
                    "precision: day } ]"),
            0);
  /* A component beyond the 32 held apart, a step without a recipe form. */
  CHECK_INT(planned("[ { set: \"OBX[*]-3.40\", value: x } ]"), 0);
  CHECK_INT(planned("[ { upper: \"OBX[*]-3.2\" } ]"), 0);
}

/* Route `msg` (\n as segment ends) with `steps`: destination a's output,
 * with \r shown as \n, the same both ways. */
static void check_output(const char *steps, const char *msg, const char *want) {
  char yaml[2048], in[2048];
  snprintf(yaml, sizeof yaml, TABLES "channel:\n  routes:\n    - { transform: %s, to: a }\n",
           steps);
  size_t n = strlen(msg);
  REQUIRE(n < sizeof in);
  for (size_t i = 0; i <= n; i++) in[i] = msg[i] == '\n' ? '\r' : msg[i];
  fx_t f;
  REQUIRE(fx_compile(&f, yaml) == 0);
  static outcome_t a, b;
  eval(&f, in, n, false, &a);
  eval(&f, in, n, true, &b);
  CHECK(same(&a, &b));
  for (size_t i = 0; i < a.len; i++)
    if (a.bytes[i] == '\r') a.bytes[i] = '\n';
  a.bytes[a.len] = 0;
  if (strcmp(a.bytes, want) != 0) fprintf(stderr, "  got  [%s]\n  want [%s]\n", a.bytes, want);
  CHECK(strcmp(a.bytes, want) == 0);
  fx_free(&f);
}

TEST(recipe_outputs) {
  const char *lab =
      "[ { set: MSH-5, value: EHR }, { copy: OBX-3.1, to: \"OBX[*]-3.4\" },"
      " { copy: OBX-3.2, to: \"OBX[*]-3.5\" }, { set: \"OBX[*]-3.6\", value: L },"
      " { map: \"OBX[*]-3.1\", table: loinc }, { set: \"OBX[*]-3.3\", value: LN },"
      " { format_date: OBR-7, precision: minute } ]";
  /* Fewer components than written, more, a repetition, an escaped key
   * mapped to a value that needs escaping, an empty code, a last segment
   * without terminator. */
  check_output(lab,
               "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\n"
               "OBR|1|O|F|P|||20240305121045\n"
               "OBX|1|NM|GLU||1\n"
               "OBX|2|NM|K^Potassium^L^a^b^c^d^e||2\n"
               "OBX|3|NM|NA^Sodium~NA^Second||3\n"
               "OBX|4|NM|A\\T\\B^AB||4\n"
               "OBX|5|NM|^Nothing||5\n"
               "OBX|6|NM|GLU^G",
               "0MSH|^~\\&|A|B|EHR|D|2024||ORU^R01|C1|P|2.5\n"
               "OBR|1|O|F|P|||202403051210\n"
               "OBX|1|NM|2345-7^^LN^GLU^^L||1\n"
               "OBX|2|NM|2823-3^Potassium^LN^K^Potassium^L^d^e||2\n"
               "OBX|3|NM|2951-2^Sodium^LN^NA^Sodium^L~NA^Second||3\n"
               "OBX|4|NM|x\\S\\y^AB^LN^A\\T\\B^AB^L||4\n"
               "OBX|5|NM|^Nothing^LN^^Nothing^L||5\n"
               "OBX|6|NM|2345-7^G^LN^GLU^G^L\n");
  /* A map that keeps an unknown code and a date left as it is: nothing
   * changed, the input itself. */
  check_output(
      "[ { map: \"OBX[*]-3.1\", table: loinc }, { format_date: OBR-7, precision: "
      "minute } ]",
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\nOBR|1|O|F|P|||\nOBX|1|NM|XX^Y||1\n",
      "0MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\nOBR|1|O|F|P|||\nOBX|1|NM|XX^Y||1\n");
  /* Two runs on OBX with one on MSH between: the second reads the first's
   * components. */
  check_output(
      "[ { map: \"OBX[*]-3.1\", table: loinc }, { set: MSH-5, value: E },"
      " { copy: OBX-3.1, to: \"OBX[*]-3.3\" }, { set: \"OBX[*]-5\", template: "
      "\"${OBX-3}\" } ]",
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\nOBX|1|NM|K^P||1\n",
      "0MSH|^~\\&|A|B|E|D|2024||ORU^R01|C1|P|2.5\n"
      "OBX|1|NM|2823-3^P^2823-3||2823-3^P^2823-3\n");
}

/* The arena bytes one evaluation of steps over msg takes. */
static size_t arena_used(const char *tables, const char *steps, const char *msg, size_t len,
                         bool stepwise) {
  static char yaml[20000];
  snprintf(yaml, sizeof yaml, "%schannel:\n  routes:\n    - { transform: %s, to: a }\n",
           tables ? tables : "", steps);
  fx_t f;
  if (fx_compile(&f, yaml)) abort();
  cad_routes_set_stepwise(f.r, stepwise);
  cad_route_result_t res;
  CHECK_INT(cad_routes_eval(f.r, msg, len, NULL, &f.arena, &res), 0);
  size_t used = f.arena.used;
  fx_free(&f);
  return used;
}

/* Many copy steps over long segments: the recipe's first output size is
 * not copies x the segment (87 copies of 4 KB segments once asked the arena
 * for ~95 times the message, more than the step-by-step path takes). */
TEST(many_copies_do_not_multiply_the_output_buffer) {
  size_t cap = 300 * 4100 + 100, o;
  char *msg = malloc(cap);
  REQUIRE(msg != NULL);
  o = (size_t)sprintf(msg, "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\r");
  for (int i = 0; i < 300; i++) {
    o += (size_t)sprintf(msg + o, "OBX|%d|TX|K^P||1|", i);
    memset(msg + o, 'x', 4000);
    o += 4000;
    msg[o++] = '\r';
  }
  static char steps[16384];
  size_t so = (size_t)sprintf(steps, "[ ");
  for (int k = 2; k <= 30; k++)
    so += (size_t)sprintf(steps + so,
                          "%s{ copy: OBX-3.1, to: \"OBX[*]-3.%d\" }, { copy: OBX-3.1, to: "
                          "\"OBX[*]-4.%d\" }, { copy: OBX-3.1, to: \"OBX[*]-6.%d\" }",
                          k > 2 ? ", " : "", k, k, k);
  sprintf(steps + so, " ]");
  size_t fused = arena_used(NULL, steps, msg, o, false),
         stepwise = arena_used(NULL, steps, msg, o, true);
  fprintf(stderr, "  arena: fused %zu, stepwise %zu, message %zu bytes\n", fused, stepwise, o);
  CHECK(fused < stepwise);
  CHECK(fused < 8 * o);
  free(msg);
}

/* Many short segments mapped through a table with one long value that none
 * of them has: the recipes' estimates (three times the longest value per
 * map, per segment) once asked the arena for 60.7 MB for a 49 KB message
 * whose step-by-step routing takes 0.7 MB. */
TEST(long_table_values_do_not_multiply_the_output_buffer) {
  size_t cap = 2000 * 40 + 100, o;
  char *msg = malloc(cap);
  REQUIRE(msg != NULL);
  o = (size_t)sprintf(msg, "MSH|^~\\&|A|B|C|D|2024||ORU^R01|C1|P|2.5\r");
  for (int i = 0; i < 2000; i++) o += (size_t)sprintf(msg + o, "OBX|%d|TX|K^P^Q^R^S||1\r", i);
  static char tables[4096];
  size_t to = (size_t)sprintf(tables, "tables:\n  long: { values: { NEVER: \"");
  memset(tables + to, 'v', 2000);
  to += 2000;
  sprintf(tables + to, "\" } }\n");
  const char *steps =
      "[ { map: \"OBX[*]-3.1\", table: long }, { map: \"OBX[*]-3.2\", table: long },"
      " { map: \"OBX[*]-3.3\", table: long }, { map: \"OBX[*]-3.4\", table: long },"
      " { map: \"OBX[*]-3.5\", table: long } ]";
  size_t fused = arena_used(tables, steps, msg, o, false),
         stepwise = arena_used(tables, steps, msg, o, true);
  fprintf(stderr, "  arena: fused %zu, stepwise %zu, message %zu bytes\n", fused, stepwise, o);
  CHECK(fused < 2 * stepwise); /* the tree of 2,000 segments is most of either */
  free(msg);
}

TEST_MAIN()
