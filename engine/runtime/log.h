/* log.h - the engine's logger: leveled, timestamped, one line per event.
 *
 * A line is an event name plus its context (channel, peer, connection id,
 * control id, message type, size, outcome, counters) and an optional short
 * free text, written as key=value pairs or as one JSON object:
 *
 *   2026-11-25T11:07:03.123Z level=info event=msg.ack channel=adt peer=127.0.0.1:40122
 *     conn=7 ctl=MSG00042 type=ADT^A01 bytes=1024 outcome=AA
 *   {"ts":"2026-11-25T11:07:03.123Z","level":"info","event":"msg.ack","channel":"adt",...}
 *
 * PHI: the context carries only identifiers and sizes.  Message contents
 * (field values) may be logged only at debug level, by the caller, in the
 * free text; control id and message type come from the message and are
 * truncated to 64 bytes.
 *
 * Every value goes through the one escaper (parsers/base/cad_json.h): valid
 * UTF-8 passes, every other byte is written as \u00XX (JSON) or \xXX (kv),
 * control bytes, quotes and backslashes are escaped, so each line is valid
 * UTF-8, a JSON line is one valid JSON object, and no value can forge a
 * line or a key.  A line is at most 4 KiB: a value cut there keeps whole
 * escapes and is still closed.
 *
 * Each line is written with a single write(2) to the configured fd (stderr
 * by default), so lines from different events never interleave.  The loop
 * thread batches (cad_log_batch): its debug and info lines wait in a 64 KiB
 * buffer, whole, until cad_log_flush(), which the engine calls before the
 * loop waits for events (a uv_prepare handle), so a busy loop writes its
 * lines with one write(2) per iteration instead of one per message; a
 * warning or an error flushes what waits and is written at once; exit()
 * flushes.  Only a crash of the process loses what waits (at most one loop
 * iteration).
 *
 * Memory: everything is borrowed for the duration of the call.  The logger's
 * state is global (one process, one loop thread); cad_log_setup() may be
 * called again on reload.
 */
#ifndef CAD_LOG_H
#define CAD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* cad_log_level_t, cad_log_format_t */
#include "hl7.h"    /* cad_str_t */

typedef struct cad_log_num {
  const char *key;
  uint64_t val;
} cad_log_num_t;

typedef struct cad_log_ctx {
  const char *channel;       /* may be NULL */
  const char *peer;          /* "127.0.0.1:40122", may be NULL */
  uint64_t conn;             /* connection id, 0 = none */
  cad_str_t ctl;             /* inbound control id (MSH-10), untrusted */
  cad_str_t type;            /* message type (MSH-9), untrusted */
  int64_t bytes;             /* size, < 0 = none */
  const char *outcome;       /* "AA", "AR", "closed", ... may be NULL */
  const char *error;         /* error name ("ECONNRESET"), may be NULL */
  const cad_log_num_t *nums; /* extra counters */
  size_t nnums;
} cad_log_ctx_t;

#define CAD_LOG_CTX_INIT \
  { NULL, NULL, 0, {NULL, 0}, {NULL, 0}, -1, NULL, NULL, NULL, 0 }

extern cad_log_level_t cad_log_min_level;

/* Level, format and output file descriptor (-1 = keep the current one). */
void cad_log_setup(cad_log_level_t level, cad_log_format_t format, int fd);

/* Write one line (unconditionally: use CAD_LOG for the level check).  ctx may
 * be NULL; fmt may be NULL (no free text). */
void cad_log_emit(cad_log_level_t level, const char *event, const cad_log_ctx_t *ctx,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define CAD_LOG_ON(lvl) ((lvl) >= cad_log_min_level)
#define CAD_LOG(lvl, event, ctx, ...)                                      \
  do {                                                                     \
    if (CAD_LOG_ON(lvl)) cad_log_emit((lvl), (event), (ctx), __VA_ARGS__); \
  } while (0)

/* Batch the calling thread's debug and info lines (on) or write them at
 * once again (off, after a flush).  One thread at most batches at a time:
 * the loop thread.  cad_log_flush() writes what waits (only on that thread;
 * elsewhere it does nothing). */
void cad_log_batch(bool on);
void cad_log_flush(void);

/* Names: "debug" ... "error"; parse returns -1 when unknown. */
const char *cad_log_level_name(cad_log_level_t l);

#endif
