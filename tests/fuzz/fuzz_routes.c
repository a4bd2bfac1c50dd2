/* fuzz_routes.c - the route configuration reader: YAML bytes ->
 * cad_yaml_parse -> cad_tables_load -> cad_routes_compile, and when that
 * succeeds, cad_routes_eval over fixed messages in a bounded arena, once with
 * fused runs of steps and once step by step: both must give the same bytes,
 * disposition and error (routes_steps.c).
 *
 * The input is a document with an optional top-level `tables:` and a
 * `channel:` (a channel mapping, or directly a list of routes).  Tables read
 * from files are skipped (the fuzzer must not read the file system). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"
#include "routes.h"
#include "yaml_doc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const dests[] = {"a", "b", "archive"};

static const char *const msgs[] = {
    "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305143000+0100||ORU^R01|C1|P|2.5.1\r"
    "PID|1||123^^^HOSP^MR~QA7^^^TEST^PT||Doe^Jane||19800412|F\r"
    "OBR|1|O1|F1|BMP|||20240305121045||||||||||||||||F\r"
    "OBX|1|NM|GLU^Glucose^L||98|mg/dL|||||F\r"
    "NTE|1||note \\T\\ more\r"
    "OBX|2|NM|K^Potassium^L||4.1|mmol/L|||||D\r"
    "ZXX|1|2\r",
    "MSH$%~\\&$A$B$$$2024$$ADT%A01$C2$P$2.3\nEVN$A01\nPID$1$$77%%%H~88$$X%Y\n",
    /* a batch with other delimiters in its second message; a field of 33
     * components; MSH-2 with no repetition or subcomponent separator */
    "FHS|^~\\&|A\rBHS|^~\\&|A\rMSH|^~\\&|A|B|C|D|2024||ORU^R01|C3|P|2.5\r"
    "OBX|1|NM|GLU^G^a^b^c^d^e^f^g^h^i^j^k^l^m^n^o^p^q^r^s^t^u^v^w^x^y^z^1^2^3^4^5||1\r"
    "MSH$%~\\&$A$B$C$D$2024$$ORU%R01$C4$P$2.5\rOBX$1$NM$K%P$$2\rBTS|1\rFTS|1\r",
    "MSH|^|A|B|C|D|2024||ORU^R01|C5|P|2.5\rPID|1||5\rOBX|1|NM|GLU^G~X||1\r",
};

static bool has_file_table(const cad_yaml_node_t *tables) {
  if (!tables || tables->type != CAD_YAML_MAPPING) return false;
  for (size_t i = 0; i < tables->n; i++)
    if (cad_yaml_get(tables->pairs[i].value, "file")) return true;
  return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  cad_yaml_limits_t lim = {65536, 32, 20000};
  cad_yaml_doc_t *doc = NULL;
  char err[256];
  if (cad_yaml_parse("fuzz.yaml", (const char *)data, size, &lim, &doc, err, sizeof err) != 0)
    return 0;
  const cad_yaml_node_t *root = doc->root;
  const cad_yaml_node_t *tables = cad_yaml_get(root, "tables");
  if (has_file_table(tables)) {
    cad_yaml_free(doc);
    return 0;
  }
  cad_buf_t errors = CAD_BUF_INIT;
  errors.limit = 1 << 20;
  cad_tables_t *t = NULL;
  cad_routes_t *r = NULL;
  if (cad_tables_load(tables, NULL, &t, &errors) == 0) {
    const cad_yaml_node_t *ch = cad_yaml_get(root, "channel");
    if (cad_routes_compile(ch ? ch : root, t, dests, 3, &r, &errors) == 0) {
      cad_arena_t a, b;
      cad_arena_init(&a, 4096, 4u << 20);
      cad_arena_init(&b, 4096, 4u << 20);
      for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        cad_route_result_t res, ref;
        cad_arena_reset(&a);
        cad_arena_reset(&b);
        cad_routes_set_stepwise(r, false);
        int rc = cad_routes_eval(r, msgs[i], strlen(msgs[i]), NULL, &a, &res);
        for (size_t k = 0; k < res.nouts; k++) {
          /* Every output must parse again. */
          cad_hl7_msg_t m;
          if (res.outs[k].bytes.len && cad_hl7_parse(&m, res.outs[k].bytes.p, res.outs[k].bytes.len,
                                                     &a, NULL, NULL) == CAD_E_NOMSH)
            __builtin_trap();
        }
        /* Fused runs of steps must give what applying each step does. */
        cad_routes_set_stepwise(r, true);
        int rc2 = cad_routes_eval(r, msgs[i], strlen(msgs[i]), NULL, &b, &ref);
        /* Out of arena budget: the two forms allocate differently, so one
         * may run out where the other does not. */
        if (rc || rc2) continue;
        if (res.disposition != ref.disposition || res.nouts != ref.nouts || res.step != ref.step ||
            res.route != ref.route || res.diag.hl7_code != ref.diag.hl7_code ||
            res.diag.segment != ref.diag.segment || res.diag.field != ref.diag.field ||
            strcmp(res.diag.reason, ref.diag.reason) != 0)
          __builtin_trap();
        for (size_t k = 0; k < res.nouts; k++)
          if (res.outs[k].dest != ref.outs[k].dest ||
              res.outs[k].bytes.len != ref.outs[k].bytes.len ||
              (res.outs[k].bytes.len &&
               memcmp(res.outs[k].bytes.p, ref.outs[k].bytes.p, res.outs[k].bytes.len) != 0))
            __builtin_trap();
      }
      cad_arena_free(&a);
      cad_arena_free(&b);
      cad_routes_free(r);
    }
    cad_tables_free(t);
  }
  cad_buf_free(&errors);
  cad_yaml_free(doc);
  return 0;
}
