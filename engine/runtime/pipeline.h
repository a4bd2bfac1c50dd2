/* pipeline.h - the path of one inbound message, from a received frame to its
 * ACK: parse, route, queue, answer, count, log.
 *
 * Everything the path touches outside itself goes through a small table of
 * functions (cad_pipe_io_t): the durable queue, the connection's reply, the
 * delivery workers (`delivered` policy) and the log.  The engine (run.c)
 * plugs in the real ones; a unit test plugs in its own and drives every
 * outcome without a socket or a disk.  There is no process-wide state: a
 * cad_pipe_t is the context, a cad_pipe_chan_t one channel's runtime.
 *
 * Every message ends in exactly one outcome (cad_pipe_outcome_t).  One
 * function turns an outcome into its counters, its ACK and its log line,
 * from one table (pipeline.c, `outcomes`):
 *
 *   outcome       ACK  counters                log event        level
 *   ACCEPTED      AA   accepted                msg.accepted     info
 *   FILTERED      AA   filtered, accepted      msg.filtered     info
 *   DEAD_LETTER   AA   dead_lettered, accepted msg.dead_letter  warn
 *   REJECTED      AR   rejected                msg.rejected     warn  (parse)
 *   UNROUTED      AR   rejected                msg.unrouted     warn  (a route rejected)
 *   ROUTE_ERROR   AE   errors                  msg.route_error  warn
 *   TOO_BIG       AR   rejected                msg.too_big      warn  (connection closed)
 *   NOT_ACCEPTED  AE   errors                  msg.not_accepted error (queue write failed,
 *                                                                     not delivered)
 *   NOMEM         AE   errors                  msg.nomem        error
 * (CA/CE/CR in enhanced mode.)  Every frame also counts `received` and
 * `bytes`; a message whose records reach the queue counts `queued`.  An
 * ACK that cannot be built counts `unanswered` (the request is answered
 * with nothing, the connection goes on).
 *
 * A frame whose MSH cannot be read (no MSH, unreadable MSH-1/MSH-2) is
 * answered AR all the same, from a stand-in header (ack.h,
 * cad_ack_msh_salvage: default delimiters, empty MSA-2).
 *
 * Log lines carry channel, peer, connection, control id, type, size,
 * outcome and a PHI-free reason; never field values.  With an archive
 * (cad_pipe_archive_open, or io->archive) every outcome is also archived, under a new message id that
 * the log line shows as id=N (`caduceus show DATA_DIR N`); the archive
 * never changes the ACK.
 *
 * Memory: the pipeline copies each frame (the caller's bytes are borrowed
 * for the call only) and frees its copy when the message is answered.  The
 * io table, the channel and its stats are borrowed: they must outlive every
 * message in flight on them (io->hold keeps the channel's owner alive).
 * Loop thread only.
 */
#ifndef CAD_PIPELINE_H
#define CAD_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ack.h"
#include "archive.h"
#include "config.h"
#include "hl7.h"
#include "log.h"
#include "queue.h"
#include "stats.h"

typedef enum {
  CAD_PIPE_ACCEPTED = 0,
  CAD_PIPE_FILTERED,
  CAD_PIPE_DEAD_LETTER,
  CAD_PIPE_REJECTED,
  CAD_PIPE_UNROUTED,
  CAD_PIPE_ROUTE_ERROR,
  CAD_PIPE_TOO_BIG,
  CAD_PIPE_NOT_ACCEPTED,
  CAD_PIPE_NOMEM,
  CAD_PIPE_NOUTCOMES
} cad_pipe_outcome_t;

/* The outcome's log event name ("msg.accepted", ...). */
const char *cad_pipe_outcome_event(cad_pipe_outcome_t o);

enum {
  CAD_PIPE_REPLY_CLOSE = 1, /* close the connection once this reply is written */
};
/* Every reply's flags also carry the message's outcome (bits 8-15, the
 * outcome + 1), so a source that is not a connection (a directory, a
 * topic) knows whether the message was taken, refused, or not accepted
 * for a reason that may pass (NOT_ACCEPTED, NOMEM: try again later)
 * without reading the ACK.  0 = not known. */
#define CAD_PIPE_REPLY_OUTCOME_BITS(o) (((unsigned)(o) + 1u) << 8)
#define CAD_PIPE_REPLY_OUTCOME(flags) ((int)(((flags) >> 8) & 0xffu) - 1)

typedef struct cad_pipe_io {
  void *ud; /* given back to every function below */
  /* Append one message's records (as cad_queue_append): 0 (cb runs later,
   * exactly once) or a negative error (cb never runs). */
  int (*append)(void *ud, const cad_queue_item_t *items, size_t n, cad_queue_append_cb cb,
                void *cb_ud);
  /* Move a message to dead-letter destination `qid` with `reason` (as
   * cad_queue_mark with CAD_JREC_DEAD): 0 (cb runs later) or negative. */
  int (*dead_letter)(void *ud, uint16_t qid, const char *reason, const char *p, size_t len,
                     cad_queue_append_cb cb, void *cb_ud);
  /* The queue id of destination `name` (registered when new): >= 0 or a
   * negative error.  Used for a channel's dead letters when
   * cad_pipe_chan_t.dlq_qid is still -1. */
  int (*dest)(void *ud, const char *name);
  /* The queue id of the channel's configured destination number `index`
   * (cad_config_t.dests[index]) in `owner`'s runtime. */
  uint16_t (*dest_qid)(void *ud, void *owner, size_t index);
  /* `delivered` policy: call cb(cb_ud, status) once record `seq` of `qid`
   * is finished (0 delivered, else given up).  Returns 0 when cb will run,
   * nonzero when nothing runs `qid` (the message is not waited for). */
  int (*wait)(void *ud, uint16_t qid, uint64_t seq, void (*cb)(void *cb_ud, int status),
              void *cb_ud);
  /* Answer request `req`: `ack` (no MLLP framing; len 0 = send nothing) is
   * copied; called exactly once per frame. */
  void (*reply)(void *ud, void *req, const char *ack, size_t len, unsigned flags);
  /* Write one log line (level not checked); `text` may be NULL.  NULL here:
   * the engine's logger (CAD_LOG). */
  void (*log)(void *ud, cad_log_level_t level, const char *event, const cad_log_ctx_t *c,
              const char *text);
  /* Take (+1) or drop (-1) a hold on a channel's owner (the runtime it
   * belongs to) while a message of it is in flight.  May be NULL. */
  void (*hold)(void *ud, void *owner, int delta);
  /* Archive the record of a message that has ended (cad_archive_inbound:
   * borrowed for the call).  May be NULL: no archive, and no id= in the
   * log line. */
  void (*archive)(void *ud, const cad_archive_in_t *rec);
} cad_pipe_io_t;

/* The context: the io table and the ACK control-id generator. */
typedef struct cad_pipe {
  cad_pipe_io_t io;
  uint64_t ctl_prefix, ctl_counter;
  /* The UTC offset of the local time zone, in minutes, at second
   * off_at (an ACK's MSH-7: looked up once a second, not per ACK). */
  int64_t off_at;
  int off_min;
  uint64_t last_id;       /* the last archive id given (cad_archive_next_id) */
  cad_archive_t *archive; /* owned (cad_pipe_archive_open), NULL = none */
  /* Destinations with lanes (lanes.h): the queue id of the lane that output
   * p/len for destination `index` of `owner` goes to; called with io.ud
   * instead of io.dest_qid when set (after cad_pipe_init). */
  uint16_t (*lane_qid)(void *ud, void *owner, size_t index, const char *p, size_t len);
} cad_pipe_t;

/* One channel as the pipeline sees it (the caller's; fields set by
 * cad_pipe_chan_init, dlq_qid may be set by the caller at start). */
typedef struct cad_pipe_chan {
  const cad_conf_channel_t *cc; /* borrowed: name, routes, limits, ACK mode and policy */
  cad_chan_stats_t *st;         /* borrowed: its counters */
  cad_hl7_limits_t limits;
  cad_ack_style_t ack_style;
  int dlq_qid; /* queue id of "channel:<name>" (route dead letters), -1 = not yet */
  void *owner; /* given to io->hold / io->dest_qid */
} cad_pipe_chan_t;

/* A source of messages other than the engine's MLLP listeners (an HTTP
 * endpoint, a watched directory, a Kafka topic): how its requests are
 * answered.  A frame with a source is answered through src->reply instead
 * of io->reply, exactly once, with the same arguments (the ACK, no MLLP
 * framing, len 0 = nothing; flags CAD_PIPE_REPLY_*).  Borrowed: must
 * outlive every frame of it in flight. */
typedef struct cad_pipe_src {
  const char *kind; /* "http", "dir", "kafka", ... for logs */
  void (*reply)(void *req, const char *ack, size_t len, unsigned flags);
} cad_pipe_src_t;

/* One received frame. */
typedef struct cad_pipe_frame {
  void *req;       /* the connection's request, given back to io->reply */
  int status;      /* 0, or CAD_E_TOOBIG: over max_message_size */
  cad_str_t bytes; /* the message (borrowed for the call); TOOBIG: its first bytes */
  uint64_t size;   /* TOOBIG: its size, or the bytes received so far when `cut` */
  bool cut;        /* TOOBIG: its end was not seen, so it is at least `size` long */
  uint64_t conn;   /* connection id, for logs */
  const char *peer;
  const cad_pipe_src_t *src; /* NULL: an MLLP listener's (answered through io->reply) */
} cad_pipe_frame_t;

void cad_pipe_init(cad_pipe_t *p, const cad_pipe_io_t *io);

/* Open the message archive the configuration asks for (engine.archive:
 * data_dir/archive, retention, counters every stats_interval; the writer
 * rebuilds at start what the journal has and it lost, runs at nice 10) and
 * archive every outcome there from now on.  0 (also when disabled) or a
 * negative error, logged: the engine then runs without it. */
int cad_pipe_archive_open(cad_pipe_t *p, const cad_config_t *cfg);
/* Write what is queued and close it (after the loop has stopped). */
void cad_pipe_archive_close(cad_pipe_t *p);
void cad_pipe_chan_init(cad_pipe_chan_t *ch, const cad_conf_channel_t *cc, cad_chan_stats_t *st,
                        void *owner);

/* Handle one frame: it is answered through io->reply exactly once, now or
 * when its records are durable (or delivered, by policy). */
void cad_pipe_frame(cad_pipe_t *p, cad_pipe_chan_t *ch, const cad_pipe_frame_t *f);

/* The control id of the next ACK (19 characters + NUL): 11 hex digits of
 * the start time in ms, 8 of a counter; unique across restarts. */
void cad_pipe_next_ctl(cad_pipe_t *p, char out[24]);

#endif
