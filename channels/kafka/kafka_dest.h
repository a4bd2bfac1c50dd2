/* kafka_dest.h - a Kafka destination: an idempotent producer (acks=all)
 * whose delivery reports come back on the loop.
 *
 * librdkafka runs its own threads; it signals its main queue through a pipe
 * (rd_kafka_queue_io_event_enable) watched by a uv_poll_t, and the loop then
 * serves the delivery reports with rd_kafka_poll(rk, 0): nothing blocks the
 * loop and no callback runs on another thread.  A 100 ms timer polls as
 * well, in case a wake-up is coalesced.
 *
 *   topic     the template rendered per message: ${HL7-path} values with any
 *             character a topic cannot hold replaced by '_'
 *   key       the decoded value at conf->key_path (default PID-3.1): every
 *             patient's messages go to one partition, in order.  Absent:
 *             no key.  The default partitioner is murmur2_random (the Java
 *             client's, so keys land where other producers put them).
 *   headers   MSH-3, MSH-4, MSH-9, MSH-10 (raw) when present
 *   outcome   OK only on the broker's acknowledgement (the delivery report
 *             without error).  A message the broker can never take (too
 *             large, invalid) is FAIL; any other error (broker down past
 *             message.timeout.ms, default here 30 s; not enough replicas;
 *             a fatal idempotence error) is RETRY.  Reports are answered in
 *             the order the messages were handed over; after one that
 *             failed, the rest of that window are RETRY.  A message librdkafka
 *             refuses before it leaves (larger than message.max.bytes) is
 *             answered the same way, and nothing more is taken until it is
 *             (so the ones behind it are not sent twice).
 *
 * Memory: librdkafka copies each message (bounded by its own
 * queue.buffering.max.* settings and by the window of 64 in flight); the
 * destination owns the producer, its pipe and handles.  Loop thread only.
 */
#ifndef CAD_KAFKA_DEST_H
#define CAD_KAFKA_DEST_H

#include <stddef.h>
#include <uv.h>

#include "kafka_conf.h"

enum { CAD_KAFKA_OK = 0, CAD_KAFKA_RETRY = 1, CAD_KAFKA_FAIL = 2 };
#define CAD_KAFKA_WINDOW 64

typedef void (*cad_kafka_done_cb)(void *ud, int outcome, const char *detail);
typedef struct cad_kafka_dest cad_kafka_dest_t;

/* conf is borrowed and must outlive the destination.  0, or a negative
 * error with a PHI-free reason in err (a property librdkafka refuses). */
int cad_kafka_dest_open(uv_loop_t *loop, const cad_kafka_dest_conf_t *conf, cad_kafka_dest_t **out,
                        char *err, size_t cap);
/* Produce p/len (copied).  0 (cb runs later, exactly once, on the loop) or
 * a negative error (cb never runs). */
int cad_kafka_dest_deliver(cad_kafka_dest_t *d, const char *p, size_t len, cad_kafka_done_cb cb,
                           void *ud);
/* Purge what is not acknowledged (answered RETRY), destroy the producer,
 * free once the handles are closed. */
void cad_kafka_dest_close(cad_kafka_dest_t *d);

/* The topic template rendered for message m into out (NUL-terminated).
 * Returns its length, or a negative error (empty or too long). */
struct cad_hl7_msg;
struct cad_arena;
int cad_kafka_topic_render(const char *tmpl, const struct cad_hl7_msg *m, struct cad_arena *a,
                           char *out, size_t cap);

#endif
