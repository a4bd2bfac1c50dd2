/* cad_kafka_mock.c - a Kafka cluster for the tests: librdkafka's mock
 * cluster (rd_kafka_mock_cluster_new), so no broker is needed.
 *
 *   cad_kafka_mock BROKERS TOPIC:PARTITIONS...
 *
 * Prints the bootstrap address on one line, then reads commands on stdin:
 * "down N" / "up N" take broker N (1-based) down or up; "quit" or end of
 * input stops the cluster.  Listens on 127.0.0.1 only (librdkafka's mock
 * brokers bind to the loopback interface). */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s BROKERS [TOPIC:PARTITIONS...]\n", argv[0]);
    return 2;
  }
  int nb = atoi(argv[1]);
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "rd_kafka_new: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nb > 0 ? nb : 1);
  if (!mc) {
    fprintf(stderr, "mock cluster failed\n");
    return 1;
  }
  for (int i = 2; i < argc; i++) {
    char *colon = strrchr(argv[i], ':');
    int parts = colon ? atoi(colon + 1) : 1;
    if (colon) *colon = 0;
    if (rd_kafka_mock_topic_create(mc, argv[i], parts > 0 ? parts : 1, nb > 0 ? nb : 1)) {
      fprintf(stderr, "topic %s failed\n", argv[i]);
      return 1;
    }
  }
  printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
  fflush(stdout);
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    int id;
    if (sscanf(line, "down %d", &id) == 1) rd_kafka_mock_broker_set_down(mc, id);
    else if (sscanf(line, "up %d", &id) == 1) rd_kafka_mock_broker_set_up(mc, id);
    else if (strncmp(line, "quit", 4) == 0) break;
    printf("ok\n");
    fflush(stdout);
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
