/* kafka_conf.c - which librdkafka properties are secrets or the engine's
 * own (kafka_conf.h). */
#include "kafka_conf.h"

#include <string.h>

bool cad_kafka_prop_is_secret(const char *name) {
  static const char *const words[] = {"password",           "secret", ".pem", "key",
                                      "oauthbearer.config", "jaas"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strstr(name, words[i])) {
      /* A file name or a location is not the secret itself. */
      if (strstr(name, ".location") || strstr(name, ".file")) return false;
      return true;
    }
  return false;
}

bool cad_kafka_prop_is_reserved(const char *name, bool consumer) {
  static const char *const producer[] = {"enable.idempotence", "acks", "request.required.acks",
                                         "bootstrap.servers", "metadata.broker.list"};
  static const char *const cons[] = {"enable.auto.commit", "enable.auto.offset.store", "group.id",
                                     "bootstrap.servers", "metadata.broker.list"};
  const char *const *t = consumer ? cons : producer;
  size_t n = consumer ? sizeof cons / sizeof cons[0] : sizeof producer / sizeof producer[0];
  for (size_t i = 0; i < n; i++)
    if (strcmp(name, t[i]) == 0) return true;
  return false;
}
