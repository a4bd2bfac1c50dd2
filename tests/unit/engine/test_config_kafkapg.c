/* test_config_kafkapg.c - the configuration of Kafka and PostgreSQL
 * destinations and of a channel's listen_kafka: values, defaults, and the
 * errors with their exact file:line:column text. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "harness.h"

static char *errors_of(const char *yaml) {
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc = cad_config_load_mem("t.yaml", yaml, strlen(yaml), CAD_CONFIG_NO_INCLUDE, &c, &err);
  cad_config_free(c);
  if (rc == 0 && !err) err = strdup("");
  if (rc != 0 && !err) err = strdup("(no error text)");
  return err;
}

#define CHECK_ERRORS(yaml, want) \
  do {                           \
    char *e_ = errors_of(yaml);  \
    CHECK_STR(e_, want);         \
    free(e_);                    \
  } while (0)

static cad_config_t *load(const char *yaml) {
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc = cad_config_load_mem("t.yaml", yaml, strlen(yaml), CAD_CONFIG_NO_INCLUDE, &c, &err);
  if (rc) fprintf(stderr, "  load failed: %s\n", err ? err : "?");
  free(err);
  return c;
}

#define LAB "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: [d]\n"

TEST(kafka_destination_values_and_defaults) {
  setenv("CAD_T_PASS", "s3cret", 1);
  cad_config_t *c = load(
      "destinations:\n  d:\n    type: kafka\n    brokers: 'k1:9092,k2:9092'\n"
      "    topic: 'hl7.${MSH-9.1}'\n"
      "    librdkafka: {linger.ms: 10, sasl.password: '${CAD_T_PASS}'}\n" LAB);
  REQUIRE(c);
  const cad_kafka_dest_conf_t *k = &c->dests[0].kafka;
  CHECK(c->dests[0].type == CAD_DEST_KAFKA);
  CHECK(strcmp(k->brokers, "k1:9092,k2:9092") == 0);
  CHECK(strcmp(k->topic, "hl7.${MSH-9.1}") == 0);
  CHECK(strcmp(k->key_path, "PID-3.1") == 0);
  REQUIRE(k->nprops == 2);
  CHECK(strcmp(k->props[0].name, "linger.ms") == 0 && strcmp(k->props[0].value, "10") == 0);
  CHECK(strcmp(k->props[1].value, "s3cret") == 0);
  cad_config_free(c);
}

TEST(kafka_destination_errors) {
  CHECK_ERRORS("destinations:\n  d: {type: kafka}\n" LAB,
               "t.yaml:2:3: missing 'brokers' in destination 'd' (the bootstrap brokers, like "
               "kafka1:9092,kafka2:9092)\n"
               "t.yaml:2:3: missing 'topic' in destination 'd' (the topic, a template like "
               "hl7.${MSH-9.1})\n");
  CHECK_ERRORS("destinations:\n  d: {type: kafka, brokers: b, topic: 'a b', key: 'PID-'}\n" LAB,
               "t.yaml:2:39: topic: expected a topic name (1 to 249 of letters, digits, '.', "
               "'_', '-', and ${HL7-path} references), got 'a b'\n"
               "t.yaml:2:46: key: expected an HL7 path like PID-3.1 in destination 'd' (expected a "
               "field number after '-')\n");
  CHECK_ERRORS(
      "destinations:\n  d: {type: kafka, brokers: b, topic: t, librdkafka: {acks: 1, "
      "sasl.password: hunter2}}\n" LAB,
      "t.yaml:2:55: librdkafka: 'acks' is set by the engine (an idempotent producer "
      "acknowledged by all replicas) and cannot be changed here\n"
      "t.yaml:2:79: librdkafka: 'sasl.password' holds a secret: write it as "
      "${ENV_VAR} (secrets come from the environment, never the configuration file)\n");
}

TEST(listen_kafka_values_and_errors) {
  cad_config_t *c = load(
      "destinations:\n  d: {type: file, dir: out}\n"
      "channels:\n  bus:\n    listen_kafka: {brokers: 'k:9092', topic: hl7.adt}\n"
      "    to: [d]\n");
  REQUIRE(c);
  const cad_conf_channel_t *ch = &c->channels[0];
  CHECK(ch->nlisten == 0 && ch->kafka.enabled);
  CHECK(strcmp(ch->kafka.topic, "hl7.adt") == 0 && strcmp(ch->kafka.group, "caduceus") == 0);
  CHECK(ch->kafka.max_in_flight == 256);
  cad_config_free(c);
  CHECK_ERRORS(
      "destinations:\n  d: {type: file, dir: out}\n"
      "channels:\n  bus:\n    listen_kafka: {brokers: k, topic: 'hl7.${MSH-9}', "
      "librdkafka: {enable.auto.commit: true}}\n    to: [d]\n",
      "t.yaml:5:39: topic: a source reads one topic: message fields cannot be used "
      "here\n"
      "t.yaml:5:68: librdkafka: 'enable.auto.commit' is set by the engine (offsets are "
      "committed once a message is durable) and cannot be changed here\n");
}

TEST(postgres_destination_values_and_defaults) {
  cad_config_t *c = load(
      "destinations:\n  d:\n    type: postgres\n    conninfo_env: DB_URL\n"
      "    sql: 'INSERT INTO t VALUES ($1, $2)'\n"
      "    params: {$2: 'OBX[*]-5', $1: MSH-10}\n    rows: OBX\n" LAB);
  REQUIRE(c);
  const cad_pg_dest_conf_t *p = &c->dests[0].postgres;
  CHECK(c->dests[0].type == CAD_DEST_POSTGRES);
  CHECK(strcmp(p->conninfo_env, "DB_URL") == 0 && strcmp(p->rows, "OBX") == 0);
  REQUIRE(p->nparams == 2);
  CHECK(strcmp(p->params[0], "MSH-10") == 0 && strcmp(p->params[1], "OBX[*]-5") == 0);
  CHECK(p->batch == 64);
  cad_config_free(c);
  c = load("destinations:\n  d: {type: postgres, sql: 'SELECT 1'}\n" LAB);
  REQUIRE(c);
  CHECK(c->dests[0].postgres.conninfo_env == NULL && c->dests[0].postgres.nparams == 0);
  cad_config_free(c);
}

TEST(postgres_destination_errors) {
  CHECK_ERRORS("destinations:\n  d: {type: postgres}\n" LAB,
               "t.yaml:2:3: missing 'sql' in destination 'd' (the SQL statement run for every "
               "row, with $1, $2, ... parameters)\n");
  CHECK_ERRORS(
      "destinations:\n  d: {type: postgres, sql: 'SELECT $1, $2', params: {$1: "
      "MSH-10}}\n" LAB,
      "t.yaml:2:23: sql: uses $2 but 'params' gives 1 in destination 'd' (write "
      "params: {$1: PID-3.1, ...})\n");
  CHECK_ERRORS(
      "destinations:\n  d: {type: postgres, sql: x, params: {$3: MSH-10, x: 'PID-', "
      "$1: 'P!D-3'}, rows: obx1, conninfo_env: 'a b', batch: 0}\n" LAB,
      "t.yaml:2:52: params: expected $1 to $3 (one per parameter of the statement), "
      "got 'x'\n"
      "t.yaml:2:67: params: $1: expected an HL7 path like PID-3.1 or OBX[*]-5, got "
      "'P!D-3': expected a 3-character segment id (letters and digits)\n"
      "t.yaml:2:117: batch: must be from 1 to 1024, got 0\n"
      "t.yaml:2:77: rows: expected a segment id like OBX (one row per occurrence) in "
      "destination 'd'\n"
      "t.yaml:2:89: conninfo_env: expected the NAME of an environment variable "
      "(letters, digits, '_') that holds the connection string in destination 'd'\n");
}

TEST_MAIN()
