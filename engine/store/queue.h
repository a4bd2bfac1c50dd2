/* queue.h - the durable queue: group commit off the loop, per-destination
 * FIFOs, dead letters.
 *
 * Appends from every connection are collected on the loop thread and handed
 * to one commit thread, which writes each batch to the journal (journal.h)
 * with a single fdatasync and then wakes the loop (uv_async), where the
 * callbacks of every request in the batch run.  So an inbound message is
 * ACKed only once all of its records are on disk, and many messages share
 * one fdatasync: throughput grows with the number of connections.
 *
 * Destinations read their FIFO back on the libuv thread pool
 * (cad_queue_read), mark progress with DONE records and move what cannot be
 * delivered to the dead-letter journal (data_dir/deadletter, never deleted
 * by retention) followed by a DEAD record, all through the same commit path.
 *
 * Bounds: pending (not yet committed) bytes are limited (max_pending_bytes);
 * a destination's backlog may be limited (max_backlog messages); over either,
 * cad_queue_append returns CAD_E_FULL and writes nothing.  A failed write
 * (disk full, I/O error) fails every request of that batch with the error
 * and commits nothing; the next batch tries again, so the queue recovers by
 * itself when space returns.
 *
 * Memory: the queue owns its threads, journals and requests; payloads are
 * copied at append.  Callbacks run on the loop thread.  Memory does not grow
 * with the backlog: the backlog is on disk.
 */
#ifndef CAD_QUEUE_H
#define CAD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "journal.h"

typedef struct cad_queue cad_queue_t;

typedef struct cad_queue_opts {
  const char *data_dir;       /* journal/ and deadletter/ go under it */
  uint64_t segment_bytes;     /* 0 = 64 MiB */
  uint64_t retain_age_ms;     /* keep finished segments this long (archive); 0 = 7 days */
  uint64_t retain_bytes;      /* and at most this many bytes of them; 0 = no limit */
  uint64_t max_pending_bytes; /* appends waiting for the disk; 0 = 64 MiB */
  uint64_t max_backlog;       /* per destination, messages; 0 = no limit */
  uint64_t retain_every_ms;   /* run retention at most this often; 0 = 5 s */
  const cad_io_t *io;         /* every file operation; NULL = cad_io_default() (must
                                 outlive the queue) */
} cad_queue_opts_t;

typedef struct cad_queue_stats {
  uint64_t batches;        /* fdatasyncs of the journal */
  uint64_t records;        /* records committed */
  uint64_t appends;        /* append requests committed (inbound messages) */
  uint64_t failed_batches; /* batches whose write failed */
  uint64_t refused_full;   /* appends refused: pending bytes or backlog */
  uint64_t pending_bytes;
  uint64_t max_batch_appends; /* largest batch seen */
} cad_queue_stats_t;

/* Open the journals under data_dir (creating them), recover, start the
 * commit thread.  `report` receives what recovery found (torn tails cut,
 * corruption skipped), NUL-terminated.  Returns 0 or a negative error. */
int cad_queue_open(uv_loop_t *loop, const cad_queue_opts_t *o, cad_queue_t **out, char *report,
                   size_t report_cap);
/* Stop after the requests already handed over are committed (their
 * callbacks run), join the thread, close the journals, free. The loop must
 * run until `done` is called. */
void cad_queue_close(cad_queue_t *q, void (*done)(void *arg), void *arg);

/* The id of a destination, created (durably, synchronously: call at start
 * or reload, not per message) when new, in the journal and in the
 * dead-letter journal (so that no dead letter ever registers a name on the
 * commit path).  Returns the id or a negative error. */
int cad_queue_dest(cad_queue_t *q, const char *name);
/* Limit one destination's backlog (messages appended and not finished);
 * 0 = the queue's default (opts.max_backlog). */
void cad_queue_set_backlog(cad_queue_t *q, uint16_t dest, uint64_t max);

/* One record of an inbound message for one destination. */
typedef struct cad_queue_item {
  uint16_t dest;
  const char *p;
  size_t len;
} cad_queue_item_t;

/* status 0: every item is durable and seqs[i] is item i's sequence in its
 * destination; otherwise a negative error and nothing was committed. */
typedef void (*cad_queue_append_cb)(void *ud, int status, const uint64_t *seqs, size_t n);

/* Append the records of one message (copied).  Returns 0 (cb runs later,
 * exactly once), CAD_E_FULL (over a bound; cb is not called) or CAD_E_STATE
 * (closing). */
int cad_queue_append(cad_queue_t *q, const cad_queue_item_t *items, size_t n,
                     cad_queue_append_cb cb, void *ud);

/* Record that `seq` of `dest` is finished: type CAD_JREC_DONE (delivered) or
 * CAD_JREC_DEAD (moved to the dead-letter journal first, with `reason` and
 * the message bytes `p`/`len`), or CAD_JREC_PURGE (everything up to seq is
 * dropped).  cb runs when durable; for DEAD with status 0, seqs[0] is the
 * dead letter's number (its queue sequence `seq`, or for seq 0 a new number
 * above every one used for that name). */
int cad_queue_mark(cad_queue_t *q, uint16_t dest, uint8_t type, uint64_t seq, const char *reason,
                   const char *p, size_t len, cad_queue_append_cb cb, void *ud);

/* Read the next MSG records of `dest` after sequence `after`, at or after
 * the reader's position (it starts at the journal's beginning), on the
 * thread pool: up to CAD_QUEUE_READ_BATCH records and about
 * CAD_QUEUE_READ_BYTES bytes at a time.  cb runs on the loop: status 1 with
 * recs[0..nrecs) filled (payload buffers owned by the reader and reused by
 * the next read), 0 when nothing is committed yet (call again after the
 * commit hook reports the destination), negative on error. */
#define CAD_QUEUE_READ_BATCH 64
#define CAD_QUEUE_READ_BYTES (1u << 20)

typedef void (*cad_queue_read_cb)(void *ud, int status);
typedef struct cad_queue_reader {
  uv_work_t work; /* internal */
  cad_queue_t *q;
  cad_jreader_t jr;
  cad_jpos_t pos; /* next position to look at */
  uint16_t dest;
  uint64_t after;                         /* skip MSG records with seq <= after (set at init) */
  cad_jread_t recs[CAD_QUEUE_READ_BATCH]; /* what the last read gave */
  size_t nrecs;
  int status;
  bool busy;
  cad_queue_read_cb cb;
  void *ud;
} cad_queue_reader_t;

int cad_queue_reader_init(cad_queue_t *q, cad_queue_reader_t *r, uint16_t dest);
int cad_queue_read(cad_queue_reader_t *r, cad_queue_read_cb cb, void *ud);
void cad_queue_reader_free(cad_queue_reader_t *r);

/* Called on the loop after every commit that added MSG records for a
 * destination (once per destination per batch). */
void cad_queue_set_commit_hook(cad_queue_t *q, void (*fn)(void *ud, uint16_t dest), void *ud);

/* Run fn on the commit thread, between batches, with both journals held
 * (the journal and the dead-letter journal: nothing else writes them
 * meanwhile), so that an operator's action (requeue, purge, listing the
 * dead letters) goes through the one writer of a running engine.  fn's
 * return value is the status cb gets on the loop (seqs NULL, n 0); fn
 * sets js->notify to a destination id whose FIFO it appended to (the
 * commit hook then runs for it), or leaves it -1.  Returns 0 (cb runs
 * later, exactly once) or CAD_E_STATE / CAD_E_NOMEM (cb is not called). */
typedef struct cad_queue_journals {
  cad_journal_t *j, *dlq;
  const char *jdir, *dlqdir;
  int notify;
} cad_queue_journals_t;
typedef int (*cad_queue_exec_fn)(void *ud, cad_queue_journals_t *js);
int cad_queue_exec(cad_queue_t *q, cad_queue_exec_fn fn, void *fn_ud, cad_queue_append_cb cb,
                   void *ud);

/* A read-only look at the journals, off both the loop and the commit
 * thread: on the libuv thread pool, snap(ud, js) runs with the journals
 * held (take what is needed: ids, sequences, positions; quick), then
 * scan(ud, js) runs without them (js->j and js->dlq NULL: read through
 * journal readers on the directories, below the positions snap took), then
 * cb(ud, status, NULL, 0) on the loop with scan's status (or snap's when
 * negative).  Returns 0 or a libuv error (cb is not called). */
int cad_queue_read_exec(cad_queue_t *q, cad_queue_exec_fn snap, cad_queue_exec_fn scan,
                        void *ud, cad_queue_append_cb cb);

/* What the journal knows of a destination (last_seq, done_seq, ...), as of
 * the last commit.  NULL for an unknown id. Loop thread only. */
const cad_jdest_t *cad_queue_dest_info(const cad_queue_t *q, uint16_t dest);
void cad_queue_get_stats(const cad_queue_t *q, cad_queue_stats_t *out);
/* Bytes of the journal on disk. */
uint64_t cad_queue_bytes(const cad_queue_t *q);

#endif
