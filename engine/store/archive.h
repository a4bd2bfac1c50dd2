/* archive.h - the message archive: every inbound message (whatever its
 * outcome) and every delivery attempt, recorded in SQLite and searchable.
 *
 * Writing (the engine).  The loop thread hands records to a bounded queue
 * in memory (cad_archive_inbound, cad_archive_attempt: they copy and return
 * at once); one writer thread parses the header fields, compresses the body
 * (zlib) and inserts records in batched transactions.  When the queue is
 * over its bounds (records or bytes) the record is dropped, counted and
 * logged: the archive never blocks the listener and never changes what is
 * ACKed.  It is a record, not a second queue: the journal holds what is
 * delivered.
 *
 * Memory: at most max_queue_bytes of waiting records (32 MiB by default)
 * and an 8 MiB SQLite page cache per open day file (two at most), whatever
 * the backlog.
 *
 * Storage: data_dir/archive/YYYY-MM-DD.db (UTC day of the message's id),
 * one SQLite database per day in WAL mode (synchronous=NORMAL: a power cut
 * may lose the last transactions, never corrupt the file); directory 0700,
 * files 0600.  Retention deletes whole day files (older than `retain`, then
 * the oldest while over `max_bytes`; never today's), so the space really
 * comes back.  A message id is ms_since_epoch << 20 | counter: it orders
 * by time and names its day file.
 *
 * Per file (ARCHIVE_SCHEMA in archive.c): msg (one row per inbound frame:
 * id, time, channel, peer, connection, size, status, reason, ACK code,
 * MSH-3..12, body zlib-compressed), pid (every PID-3 repetition: value and
 * assigning authority), dlv (one row per destination record: queue id,
 * sequence, name, state, attempts, last detail), att (every attempt), fld
 * (declared index fields: name, value, message), and for channels with fts
 * on, fts (FTS5, contentless, rowid = message id) and fts_rows.
 *
 * Statuses of a message: accepted, filtered, dead (dead-lettered by a
 * route), rejected (a route rejected it), unparseable, too_big, error; of a
 * delivery: queued, delivered, retrying, dead.
 */
#ifndef CAD_ARCHIVE_H
#define CAD_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hl7.h"

typedef struct cad_archive cad_archive_t;

/* What a channel's messages get besides the fixed index (config.h:
 * engine.archive and a channel's `archive:`).  Borrowed for
 * cad_archive_open (copied). */
typedef struct cad_archive_field {
  const char *name; /* searched as --field NAME=VALUE (< 64 bytes, no '=') */
  cad_hl7_path_t path;
} cad_archive_field_t;
#define CAD_ARCHIVE_MAX_FIELDS 32 /* per channel */
typedef struct cad_archive_chan {
  const char *name; /* the channel */
  const cad_archive_field_t *fields;
  size_t nfields;     /* at most CAD_ARCHIVE_MAX_FIELDS (more are ignored) */
  bool fts;           /* full-text index of its bodies (FTS5) */
  uint64_t retain_ms; /* 0 = opts.retain_ms */
} cad_archive_chan_t;

typedef struct cad_archive_opts {
  const char *data_dir;            /* archive/ goes under it */
  uint64_t retain_ms;              /* keep day files this long; 0 = 7 days */
  uint64_t max_bytes;              /* and at most this many bytes; 0 = no limit */
  bool rebuild;                    /* at open, rebuild (on the writer thread) what the
                              journal has and the archive lost: from 5 minutes
                              before the newest archived message until now */
  size_t max_queue;                /* records waiting for the writer; 0 = 65536 */
  size_t max_queue_bytes;          /* their bytes; 0 = 32 MiB */
  size_t max_raw;                  /* bytes kept of a frame that is not a message; 0 = 64 KiB */
  unsigned batch;                  /* records per transaction at most; 0 = 512 */
  int nice;                        /* the writer thread's nice value (Linux: per thread), 0 = the
               process's; the engine uses 10: ACKs before the archive */
  uint64_t stats_ms;               /* log the counters (stats.archive) this often; 0 = never */
  const cad_archive_chan_t *chans; /* per channel settings (copied); others: none */
  size_t nchans;
} cad_archive_opts_t;

/* One inbound frame and what became of it.  Everything is borrowed for
 * the call (copied). */
typedef struct cad_archive_in {
  uint64_t id; /* cad_archive_next_id */
  const char *channel;
  const char *peer; /* may be NULL */
  uint64_t conn;
  const char *status; /* see above */
  const char *reason; /* PHI-free, may be NULL */
  const char *ack;    /* "AA", "CR", "no_ack_msh15", ... may be NULL */
  const char *bytes;  /* the frame (or its first bytes when too big) */
  size_t len;
  uint64_t size;        /* its full size */
  const uint16_t *qids; /* destination records written: queue id and seq */
  const uint64_t *seqs;
  size_t nq;
  uint64_t dl_seq; /* a route dead letter's number (status dead), 0 = none */
} cad_archive_in_t;

typedef enum {
  CAD_ARCH_DELIVERED = 0,
  CAD_ARCH_RETRY = 1,  /* the attempt failed, another follows */
  CAD_ARCH_FAILED = 2, /* the attempt failed permanently */
  CAD_ARCH_DEAD = 3,   /* the record was moved to the dead letters (no attempt) */
} cad_archive_att_t;

typedef struct cad_archive_stats {
  uint64_t queued, written, dropped, failed, batches; /* records */
  uint64_t pending, pending_bytes;
} cad_archive_stats_t;

/* Open data_dir/archive (creating it), apply retention, start the writer. */
int cad_archive_open(const cad_archive_opts_t *o, cad_archive_t **out);
/* How long close keeps writing what is queued before it drops the rest. */
#define CAD_ARCHIVE_CLOSE_MS 3000u

/* Write what is queued (for at most CAD_ARCHIVE_CLOSE_MS; the rest is
 * dropped, counted and logged), stop the writer, close.  NULL is a no-op. */
void cad_archive_close(cad_archive_t *a);

/* A new message id (loop thread; unique while the clock does not go back). */
uint64_t cad_archive_next_id(uint64_t *last);

/* Queue a record.  Returns 0, or CAD_E_FULL (dropped, counted and logged)
 * or CAD_E_NOMEM.  Loop thread (or any one thread). */
int cad_archive_inbound(cad_archive_t *a, const cad_archive_in_t *in);
int cad_archive_attempt(cad_archive_t *a, uint16_t qid, uint64_t seq, cad_archive_att_t what,
                        const char *detail);
/* The name of queue id `qid` (for the records of that destination). */
void cad_archive_dest_name(cad_archive_t *a, uint16_t qid, const char *name);
/* Block until every record queued before the call is written (tests,
 * benchmarks, shutdown).  Returns 0. */
int cad_archive_flush(cad_archive_t *a);
void cad_archive_get_stats(cad_archive_t *a, cad_archive_stats_t *out);
/* One info line "stats.archive" with those counters (level-checked); the
 * writer also logs it every opts.stats_ms. */
void cad_archive_log_stats(cad_archive_t *a);

/* A connection or frame the listener refused before the pipeline had a
 * message (archive_events.c): a record without a body, with `status`
 * "denied" (allow list), "tls_failed", "bad_frame" (a frame cut by a new
 * start block, a stray end block), "frame_timeout" or "garbage" (bytes
 * outside frames past the bound), and a PHI-free reason.  `last_id` as for
 * cad_archive_next_id.  a NULL: a no-op.  Loop thread. */
int cad_archive_refused(cad_archive_t *a, uint64_t *last_id, const char *channel, const char *peer,
                        uint64_t conn, const char *status, const char *reason);

/* An operator's change to the queue, recorded (table evt of today's file)
 * with who and when; the delivery rows it ends take its state: "requeue"
 * (qid, seq: the dead letter's original queue record, new_seq its new one:
 * state `requeued`), "purge" (every queued or retrying record of qid up to
 * seq: `purged`), "purge_dead" (the dead records of dest: `purged`).
 * Works with or without a running engine (SQLite's own locking).
 * *touched = delivery rows changed. */
typedef struct cad_archive_note {
  const char *kind;   /* "requeue", "purge", "purge_dead" */
  const char *who;    /* "alice (uid 1000)", an API token's name, ... */
  const char *dest;   /* the destination's name */
  uint16_t qid;       /* its queue id */
  uint64_t seq;       /* see above */
  uint64_t new_seq;   /* requeue */
  uint64_t count;     /* messages concerned */
  const char *detail; /* PHI-free, may be NULL */
} cad_archive_note_t;
int cad_archive_note(const char *data_dir, const cad_archive_note_t *n, uint64_t *touched);

typedef struct cad_archive_event {
  int64_t t_ms;
  const char *kind, *who, *dest;
  uint64_t seq, new_seq, count;
  const char *detail;
} cad_archive_event_t;
typedef void (*cad_archive_event_cb)(void *ud, const cad_archive_event_t *e);
/* The recorded operator events of dir (data_dir/archive) since since_ms,
 * oldest first; returns how many, or a negative error. */
int cad_archive_events(const char *dir, int64_t since_ms, cad_archive_event_cb cb, void *ud);

/* ---- reading (the CLI; archive_query.c) -------------------------------- */

#define CAD_ARCHIVE_MAX_QFIELDS 8
#define CAD_ARCHIVE_MAX_TEXT 1024 /* bytes of cad_archive_query_t.text */
typedef struct cad_archive_query {
  const char *patient;    /* PID-3 value, or value^authority */
  const char *control_id; /* MSH-10 */
  const char *type;       /* MSH-9: "ORU" or "ORU^R01" */
  const char *channel, *dest, *status;
  const char *sender, *receiver; /* MSH-4, MSH-6 */
  int64_t since_ms, until_ms;    /* 0 = open */
  uint64_t limit;                /* 0 = 50 */
  /* Declared index fields, each "NAME=VALUE" (NAME: a declared name or an
   * HL7 path, compared in canonical form: obr-4.1 is OBR-4.1); all must
   * match.  The value is compared decoded and whole. */
  const char *fields[CAD_ARCHIVE_MAX_QFIELDS];
  size_t nfields;
  /* Full text (channels with fts on): every whitespace-separated word must
   * be in the body, each taken literally (FTS5 syntax in it is quoted,
   * never interpreted); a word the tokenizer splits (GLU^Glucose) is a
   * phrase.  Case-insensitive, whole tokens. */
  const char *text;
} cad_archive_query_t;

typedef struct cad_archive_row {
  uint64_t id;
  int64_t t_ms;
  const char *channel, *peer, *status, *reason, *ack, *type, *control_id, *sender, *receiver;
  uint64_t size;
  const char *dests; /* "name:state,..." or "" */
} cad_archive_row_t;

typedef int (*cad_archive_row_cb)(void *ud, const cad_archive_row_t *row);

/* Search the day files of `dir` (data_dir/archive) in range, newest first;
 * cb per row (its strings valid for the call; nonzero stops).  Returns the
 * number of rows or a negative error; `err` gets a message. */
int cad_archive_search(const char *dir, const cad_archive_query_t *q, cad_archive_row_cb cb,
                       void *ud, char *err, size_t errcap);

/* How many messages match q (its limit ignored).  Returns 0 and *n, or a
 * negative error (`err` says why).  A query that cannot be run (a --text
 * with no word, a field without '=') is CAD_E_INVAL with `err` set. */
int cad_archive_count(const char *dir, const cad_archive_query_t *q, uint64_t *n, char *err,
                      size_t errcap);

/* Print message `id` to stdout: its record, the ACK we sent, the body
 * (through `body`, which prints it as it likes), then the journey per
 * destination with every attempt.  Returns 0, CAD_E_NOTFOUND or an error
 * (`err` says why).  body_only: only the body, through `body`. */
typedef void (*cad_archive_body_fn)(void *ud, const char *p, size_t len);
int cad_archive_show(const char *dir, uint64_t id, bool body_only, cad_archive_body_fn body,
                     void *ud, char *err, size_t errcap);

/* The day file name of a time (YYYY-MM-DD.db) and the day of a name (days
 * since the epoch, or -1). */
void cad_archive_day_name(int64_t ms, char out[16]);
int64_t cad_archive_day_of(const char *name);
/* A time given to search, show, prune or the admin API, in ms since the
 * epoch: "90m" / "1.5h" / "2d" (s, m, h, d before now_ms, at most 10^8
 * units), a plain number (ms since the epoch), or YYYY-MM-DD[(T| )HH:MM
 * [:SS]][Z] in UTC.  -1 when malformed or out of range. */
int64_t cad_archive_parse_time(const char *s, int64_t now_ms);

/* Compare the journal's queue records (MSG, time in [from_ms, until_ms),
 * until 0 = open) of data_dir/journal with the archive: *missing counts the
 * ones it has no delivery row for; with `fix` they are rebuilt (status
 * accepted, reason "rebuilt from the journal", the routed bytes as body, no
 * channel: the journal does not know it).  Safe while the engine runs. */
int cad_archive_reindex(const char *data_dir, int64_t from_ms, int64_t until_ms, bool fix,
                        uint64_t *checked, uint64_t *missing, uint64_t *rebuilt);
/* The same, in transactions of up to 256 rows, giving up (returning 0 with
 * what it did so far) as soon as *stop is true (NULL: never). */
int cad_archive_reindex_until(const char *data_dir, int64_t from_ms, int64_t until_ms, bool fix,
                              const _Atomic bool *stop, uint64_t *checked, uint64_t *missing,
                              uint64_t *rebuilt);
/* The receive time of the newest archived message of dir (0 = none). */
int64_t cad_archive_newest(const char *dir);

/* Retention per channel (archive_retain.c): in the day files that
 * cad_archive_prune keeps (it is given the longest retention), delete the
 * messages of every channel whose own retention (ch[i].retain_ms; 0 = the
 * engine's `retain_ms`) has passed, with their deliveries, index rows and
 * full-text words; *rows = messages deleted.  Safe while the engine runs. */
int cad_archive_prune_channels(const char *dir, int64_t now_ms, uint64_t retain_ms,
                               const cad_archive_chan_t *ch, size_t n, uint64_t *rows);
/* The longest of retain_ms and the channels' own retentions. */
uint64_t cad_archive_longest_retain(uint64_t retain_ms, const cad_archive_chan_t *ch, size_t n);

/* Delete expired day files of `dir` as of `now_ms`; returns how many. */
int cad_archive_prune(const char *dir, int64_t now_ms, uint64_t retain_ms, uint64_t max_bytes,
                      uint64_t *freed);

#endif
