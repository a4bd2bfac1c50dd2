/* kafka_conf.h - the configuration of a Kafka destination (`type: kafka`)
 * and of a channel's Kafka source (`listen_kafka:`).
 *
 *   destinations:
 *     bus:
 *       type: kafka
 *       brokers: ${KAFKA_BROKERS}        # bootstrap.servers
 *       topic: hl7.${MSH-9.1}            # a template: ${HL7-path} from each message
 *       key: PID-3.1                     # the message key (default PID-3.1)
 *       librdkafka: { security.protocol: ssl, ssl.ca.location: ca.pem }
 *
 *   channels:
 *     from-bus:
 *       listen_kafka:
 *         brokers: ${KAFKA_BROKERS}
 *         topic: hl7.adt
 *         group: caduceus                # consumer group (group.id)
 *         max_in_flight: 256             # messages read but not yet durable
 *         librdkafka: { ... }
 *
 * `librdkafka:` passes any librdkafka property through (TLS, SASL, timeouts).
 * A property whose name says it holds a secret (password, secret, key
 * material, sasl.oauthbearer.config) must be written as ${ENV}: the loader
 * refuses it written literally.  The properties the engine relies on
 * (enable.idempotence and acks for the producer; enable.auto.commit and
 * enable.auto.offset.store for the consumer) cannot be changed there.
 *
 * The key tables live in engine/config/config_kafkapg.c (the property map
 * and the topic template need the engine's own setters).  Strings are owned
 * by the configuration that holds the struct.
 */
#ifndef CAD_KAFKA_CONF_H
#define CAD_KAFKA_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One `librdkafka:` property, name and value as written (after ${ENV}). */
typedef struct cad_kafka_prop {
  char *name;
  char *value;
} cad_kafka_prop_t;

typedef struct cad_kafka_dest_conf {
  const char *brokers;     /* bootstrap.servers, required */
  const char *topic;       /* a template: literal text and ${HL7-path} references */
  const char *key_path;    /* the message key's HL7 path, default "PID-3.1" */
  cad_kafka_prop_t *props; /* owned, nprops */
  size_t nprops;
} cad_kafka_dest_conf_t;

typedef struct cad_kafka_src_conf {
  bool enabled;            /* `listen_kafka:` written (first: a presence section) */
  const char *brokers;     /* bootstrap.servers, required */
  const char *topic;       /* the topic read, required */
  const char *group;       /* group.id, default "caduceus" */
  uint32_t max_in_flight;  /* messages read and not yet durable, default 256 */
  cad_kafka_prop_t *props; /* owned, nprops */
  size_t nprops;
} cad_kafka_src_conf_t;

/* Whether a librdkafka property name holds a secret (it must come from
 * ${ENV}), and whether it is one the engine sets itself (refused). */
bool cad_kafka_prop_is_secret(const char *name);
bool cad_kafka_prop_is_reserved(const char *name, bool consumer);

#endif
