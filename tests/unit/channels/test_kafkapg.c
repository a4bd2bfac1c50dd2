/* test_kafkapg.c - the message-dependent parts of the Kafka and PostgreSQL
 * destinations: the statement's parameter rows (cad_pg_rows: rows per
 * segment, [*] from the row's own segment, NULL for absent / empty / "",
 * escapes decoded), the topic template (characters a topic cannot hold
 * replaced, empty and too long refused) and which librdkafka properties
 * are secrets or the engine's own. */
#include <stdio.h>
#include <string.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "harness.h"
#include "hl7.h"
#include "kafka_conf.h"
#include "kafka_dest.h"
#include "pg_dest.h"

#define MSG                                                     \
  "MSH|^~\\&|LIS|LAB|EHR|HOSP|20240305||ORU^R01|CTL1|P|2.5.1\r" \
  "PID|1||MRN7^^^H^MR||Doe^Jane\r"                              \
  "OBR|1|ORD1\r"                                                \
  "OBX|1|NM|GLU^Glucose||98|mg/dL\r"                            \
  "OBX|2|ST|NOTE^Note||a\\F\\b|\"\"\r"                          \
  "OBX|3|NM|K^Potassium||\r"

typedef struct rows {
  char v[8][8][32]; /* row, param, value ("<NULL>") */
  int n;
} rows_t;

static void collect(void *ud, const char *const *values, size_t n) {
  rows_t *r = ud;
  if (r->n >= 8) return;
  for (size_t i = 0; i < n && i < 8; i++)
    snprintf(r->v[r->n][i], 32, "%s", values[i] ? values[i] : "<NULL>");
  r->n++;
}

TEST(pg_rows_one_per_segment) {
  char *params[] = {"MSH-10", "OBX[*]-1", "OBX[*]-3.1", "OBX[*]-5", "OBX[*]-6", "PID-3.1"};
  cad_pg_dest_conf_t c = {NULL, "x", params, 6, "OBX", 64, 60000};
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  rows_t r = {0};
  int n = cad_pg_rows(&c, MSG, strlen(MSG), &a, collect, &r);
  CHECK(n == 3 && r.n == 3);
  CHECK(strcmp(r.v[0][0], "CTL1") == 0 && strcmp(r.v[0][1], "1") == 0);
  CHECK(strcmp(r.v[0][2], "GLU") == 0 && strcmp(r.v[0][3], "98") == 0);
  CHECK(strcmp(r.v[0][4], "mg/dL") == 0 && strcmp(r.v[0][5], "MRN7") == 0);
  CHECK(strcmp(r.v[1][3], "a|b") == 0);    /* \F\ decoded */
  CHECK(strcmp(r.v[1][4], "<NULL>") == 0); /* "" is NULL */
  CHECK(strcmp(r.v[2][3], "<NULL>") == 0); /* empty is NULL */
  CHECK(strcmp(r.v[2][4], "<NULL>") == 0); /* absent is NULL */
  CHECK(strcmp(r.v[2][2], "K") == 0 && strcmp(r.v[2][0], "CTL1") == 0);
  cad_arena_free(&a);
}

TEST(pg_rows_without_rows_takes_first) {
  char *params[] = {"PID-5.1", "OBX[*]-3.1", "ZZZ-1"};
  cad_pg_dest_conf_t c = {NULL, "x", params, 3, NULL, 64, 60000};
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  rows_t r = {0};
  CHECK(cad_pg_rows(&c, MSG, strlen(MSG), &a, collect, &r) == 1 && r.n == 1);
  CHECK(strcmp(r.v[0][0], "Doe") == 0 && strcmp(r.v[0][1], "GLU") == 0);
  CHECK(strcmp(r.v[0][2], "<NULL>") == 0);
  cad_arena_free(&a);
}

TEST(pg_rows_none_and_bad_input) {
  char *params[] = {"MSH-10"};
  cad_pg_dest_conf_t c = {NULL, "x", params, 1, "NTE", 64, 60000};
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  rows_t r = {0};
  CHECK(cad_pg_rows(&c, MSG, strlen(MSG), &a, collect, &r) == 0 && r.n == 0);
  CHECK(cad_pg_rows(&c, "not hl7", 7, &a, collect, &r) < 0 && r.n == 0);
  CHECK(cad_pg_rows(&c, "", 0, &a, collect, &r) < 0);
  cad_arena_free(&a);
}

TEST(kafka_topic_template) {
  cad_arena_t a;
  cad_arena_init(&a, 4096, 0);
  cad_hl7_msg_t m;
  REQUIRE(cad_hl7_parse(&m, MSG, strlen(MSG), &a, NULL, NULL) == 0);
  char out[64];
  CHECK(cad_kafka_topic_render("hl7.${MSH-9.1}", &m, &a, out, sizeof out) == 7);
  CHECK(strcmp(out, "hl7.ORU") == 0);
  CHECK(cad_kafka_topic_render("hl7.${MSH-9}", &m, &a, out, sizeof out) > 0);
  CHECK(strcmp(out, "hl7.ORU_R01") == 0); /* '^' cannot be in a topic */
  CHECK(cad_kafka_topic_render("${ZZZ-1}", &m, &a, out, sizeof out) == CAD_E_EMPTY);
  CHECK(cad_kafka_topic_render("hl7.${PID-5}", &m, &a, out, 8) == CAD_E_TOOBIG);
  CHECK(cad_kafka_topic_render("plain", NULL, &a, out, sizeof out) == 5);
  cad_arena_free(&a);
}

TEST(kafka_properties) {
  CHECK(cad_kafka_prop_is_secret("sasl.password"));
  CHECK(cad_kafka_prop_is_secret("ssl.key.password"));
  CHECK(cad_kafka_prop_is_secret("ssl.key.pem"));
  CHECK(!cad_kafka_prop_is_secret("ssl.key.location"));
  CHECK(!cad_kafka_prop_is_secret("linger.ms"));
  CHECK(cad_kafka_prop_is_reserved("acks", false));
  CHECK(cad_kafka_prop_is_reserved("enable.idempotence", false));
  CHECK(!cad_kafka_prop_is_reserved("acks", true));
  CHECK(cad_kafka_prop_is_reserved("enable.auto.commit", true));
  CHECK(!cad_kafka_prop_is_reserved("session.timeout.ms", true));
}

TEST_MAIN()
