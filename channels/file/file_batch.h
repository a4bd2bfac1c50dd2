/* file_batch.h - the file destination's batch mode: messages collected into
 * HL7 batch files (FHS, BHS, the messages, BTS, FTS), one file per batch.
 *
 *   batch:
 *     max_messages: 1000      # a batch is written after this many messages,
 *     max_bytes: 10MiB        # or this many bytes of messages,
 *     max_age: 1m             # or when its first message has waited this long
 *     name: "batch_%Y%m%d_%H%M%S.hl7"   # strftime, UTC; "~2"... when taken
 *
 * Durability.  A message is reported written once it is appended to the
 * destination's stage file (<dir>/.batch.stage, 0600) and fdatasync'd: a
 * record of magic, length, CRC32 and the message, so a torn tail after a
 * power cut is recognised and cut (those messages were never reported
 * written, so the queue delivers them again).  Several messages share one
 * sync.  A batch is written by streaming the stage into a temporary file
 * (".batch-tmp.<random>") with its envelope, fdatasync, a COMMIT record
 * naming the final file appended to the stage and synced, the rename to
 * the final name (never replacing a file), a directory fsync, and the
 * stage emptied.  At open, a stage left by a crash is finished: a COMMIT
 * whose file exists means the batch was published (the stage is emptied);
 * otherwise its messages are published at once as a batch.  So a crash
 * never loses a message reported written and never publishes a batch twice;
 * what may repeat is what the queue redelivers (messages appended but not
 * yet reported written: at most one sync's worth).
 *
 * Envelope.  FHS and BHS take the delimiters (MSH-1, MSH-2) and sending /
 * receiving application and facility (MSH-3..6) of the batch's first
 * message, FHS-7/BHS-7 the time it is written (UTC), FHS-9 the file name,
 * FHS-11/BHS-11 a unique control id; BTS-1 is the number of messages, FTS-1
 * is 1.  Segments end in \r; each message's last segment too.  A message
 * whose delimiters differ from the first one's starts a new batch.
 *
 * One instance per folder: the stage is locked (flock) by the instance
 * that uses it.  A reload opens the new destination while the old one may
 * still be finishing; the new one waits for the lock (trying every 50 ms;
 * after 30 s the messages waiting fail and are retried by the delivery
 * worker), so a batch destination must run with `lanes: 1` (each lane is an
 * instance) and two destinations must not share a folder.
 *
 * Threads: appends and batch writes run on the libuv thread pool, one at a
 * time, in order; callbacks on the loop.  Memory: the queue of pending
 * messages (bounded by the delivery window) and a 64 KiB copy buffer.
 */
#ifndef CAD_FILE_BATCH_H
#define CAD_FILE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cad_file_batch_opts {
  bool enabled;          /* first: `batch:` was written (CAD_CONF_PRESENCE) */
  uint32_t max_messages; /* default 1000 */
  size_t max_bytes;      /* default 10 MiB */
  uint64_t max_age_ms;   /* default 60000 */
  const char *name;      /* strftime pattern (UTC), default "batch_%Y%m%d_%H%M%S.hl7" */
} cad_file_batch_opts_t;

typedef struct cad_file_batch cad_file_batch_t;

/* status: 0 appended and synced, or a negative error. */
typedef void (*cad_file_batch_cb)(int status, void *arg);

/* Open the batch writer of folder `dir` (created with dir_mode if missing);
 * a stage left by a crash is finished first (on the thread pool). */
int cad_file_batch_open(uv_loop_t *loop, const char *dir, const cad_file_batch_opts_t *o,
                        uint32_t mode, uint32_t dir_mode, cad_file_batch_t **out, char *err,
                        size_t cap);
/* Queue one message (bytes borrowed until cb). 0, or CAD_E_STATE when
 * closing, CAD_E_NOMEM. */
int cad_file_batch_write(cad_file_batch_t *b, const char *bytes, size_t len, cad_file_batch_cb cb,
                         void *arg);
/* Batches written so far (for tests and logs). */
uint64_t cad_file_batch_count(const cad_file_batch_t *b);
/* Close: pending messages are appended (callbacks run); what is staged
 * stays in the stage and is published at the next open. */
void cad_file_batch_close(cad_file_batch_t *b);

/* The envelope lines for a batch of `count` messages whose first message is
 * `first` (only its MSH is read), written at `when` (seconds, UTC) as file
 * `name` with control id `ctl`: "FHS...\rBHS...\r" into head (cap bytes)
 * and "BTS|n\rFTS|1\r" into tail.  Returns 0, or CAD_E_INVAL when `first`
 * has no readable MSH.  (Exposed for the unit tests and the fuzzer.) */
int cad_file_batch_envelope(const char *first, size_t len, uint64_t count, int64_t when,
                            const char *name, const char *ctl, char *head, size_t hcap, char *tail,
                            size_t tcap);

#endif
