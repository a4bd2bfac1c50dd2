/* journal.h - the durable log under every destination queue.
 *
 * One append-only journal per engine (data_dir/journal/), in segment files of
 * at most `segment_bytes` each.  Every destination's FIFO is the subsequence
 * of MSG records carrying its id; DONE and DEAD records move a destination's
 * delivered position.  One journal means one fdatasync per group commit
 * however many destinations a batch touches.
 *
 * A segment file starts with a 48-byte header and holds records (format
 * version 2):
 *
 *   segment header
 *   0      4     magic "CADJ"
 *   4      1     version (2)
 *   8      8     segment number
 *   16     8     creation time, milliseconds since the epoch
 *   24     8     salt: 64 random bits drawn when the segment is created
 *   32     12    zero
 *   44     4     CRC32 (zlib) of bytes 0..43
 *
 *   record
 *   offset size  field
 *   0      4     tag: the low 32 bits of the segment's salt (no zero byte)
 *   4      1     version (2)
 *   5      1     type: 1 MSG, 2 DONE, 3 DEAD, 4 DEST (id <-> name), 5 PURGE
 *   6      2     destination id
 *   8      4     payload length
 *   12     4     CRC32 (zlib) of the salt (8 bytes), then bytes 0..31 with
 *                this field zero, then the payload
 *   16     8     sequence: MSG its per-destination number (1, 2, ...);
 *                DONE/DEAD/PURGE the MSG sequence they refer to; always
 *                below 2^62 (a record claiming more is treated as corrupt)
 *   24     8     time, milliseconds since the epoch
 *   32     len   payload: MSG the message bytes; DEAD the reason (text);
 *                DEST the destination name; DONE the receiver's answer to
 *                the message it names (an ACK code, text, may be empty:
 *                readers of format v2 before it ignored DONE payloads)
 *
 * All integers little-endian.  Framing cannot be forged by what senders
 * send: a message body may hold bytes shaped like a record, but the sender
 * does not know the segment's salt, so its tag and CRC do not hold (a
 * random guess passes with odds of 2^-64).  Recovery and the reader only
 * ever resynchronise onto a record that proves itself with the salt.
 *
 * Version 1 (32-byte segment header without a salt, records tagged "CADQ"
 * with a CRC without salt) is still read, with version 1's weaker framing,
 * so that an upgrade keeps its queue; it is never appended to: the first
 * read-write open by this version starts a new version-2 segment, and
 * retention deletes the old ones once finished.
 *
 * The active segment is zero-filled ahead of the writes, 1 MiB at a time,
 * so that fdatasync has no file size or extent change to journal for most
 * batches; zeros after the last record are that preallocation (cut silently
 * at recovery and when a segment is closed), not damage.  A record proves
 * itself by its CRC: recovery keeps the valid prefix of the last segment
 * and cuts the rest (a torn write).  An invalid record with valid data
 * after it (corruption in the middle), a damaged end of an older segment,
 * and any damaged end after a clean shutdown are damage: each is reported
 * (with the type, destination and sequence its header gives, when it is
 * readable) and skipped, never silently.  A read-write open copies every
 * cut or skipped region that is not all zeros (damage and torn tails)
 * aside for an operator, to DIR/damaged/<segment>-<offset>.bin (mode 0600),
 * before it cuts anything; the journal never deletes those.
 *
 * Clean shutdown: cad_journal_close (read-write) writes DIR/clean (the last
 * segment's number and committed size, with a CRC; temp, fsync, rename,
 * directory fsync) and the next read-write open removes it before writing.
 * With it present, the last segment's end is known, so a damaged last
 * record is damage (reported, kept aside), not a torn tail.
 *
 * Threads: the journal itself is not thread safe.  The queue (queue.h) calls
 * the write side from its commit thread and the read side (cad_journal_read)
 * from worker threads, which is safe because readers only read below the
 * committed end, which only grows, and segment files are only deleted when
 * no reader can be positioned in them (the queue ensures it).
 *
 * Memory: the journal owns its segment list and per-destination table; a
 * reader's buffers belong to the caller.  Nothing grows with the backlog but
 * the segment list (a few dozen bytes per segment file).
 */
#ifndef CAD_JOURNAL_H
#define CAD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cad_io.h"
#include "cad_mem.h"

#define CAD_JOURNAL_MAX_DESTS 1024
#define CAD_JOURNAL_VERSION 2
#define CAD_JSEG_HDR 48 /* segment header (version 2) */
#define CAD_JREC_HDR 32

enum {
  CAD_JREC_MSG = 1,
  CAD_JREC_DONE = 2,
  CAD_JREC_DEAD = 3,
  CAD_JREC_DEST = 4,
  CAD_JREC_PURGE = 5,
};

typedef struct cad_jpos {
  uint64_t seg; /* segment number */
  uint64_t off; /* byte offset in it */
} cad_jpos_t;

/* What the journal knows of one destination (rebuilt by recovery). */
typedef struct cad_jdest {
  char *name;                /* owned */
  uint64_t last_seq;         /* highest MSG sequence appended */
  uint64_t done_seq;         /* every MSG with seq <= done_seq is finished
                              (delivered, dead-lettered or purged) */
  uint64_t dead;             /* DEAD records seen (dead letters ever) */
  uint64_t delivered;        /* messages DONE finished (see apply() in journal.c) */
  uint64_t oldest_undone_ms; /* time of the first unfinished MSG, 0 = none (after recovery) */
  uint64_t dest_seg;         /* newest segment holding its DEST record (recovery) */
} cad_jdest_t;

/* How the records of one segment are framed: its format version, the
 * 4-byte tag every record starts with and the salt in every record's CRC. */
typedef struct cad_jkey {
  uint8_t version; /* 1 or 2 */
  uint32_t tag;    /* v1: "CADQ"; v2: the low 32 bits of the salt */
  uint64_t salt;   /* v2 only */
  uint32_t hdr;    /* segment header size: where the first record starts */
} cad_jkey_t;

typedef struct cad_jseg {
  uint64_t no;
  cad_jkey_t key;
  uint64_t size; /* committed bytes */
  uint64_t created_ms;
  uint64_t last_ms;  /* time of the newest record */
  uint64_t *max_seq; /* per destination id: highest MSG seq in this
                              segment (0 = none); owned, ndest_cap entries */
} cad_jseg_t;

typedef struct cad_journal_stats {
  uint64_t torn_bytes;      /* cut from the tail at recovery */
  uint64_t corrupt_records; /* invalid records skipped in the middle */
  uint64_t corrupt_bytes;
  uint64_t records;    /* valid records seen at recovery */
  uint64_t kept_aside; /* regions copied to DIR/damaged/ by this open */
  bool clean;          /* the last session ended with a clean shutdown */
} cad_journal_stats_t;

typedef struct cad_journal {
  const cad_io_t *io; /* borrowed: every file operation goes through it */
  char *dir;          /* owned: data_dir/journal */
  int dirfd;
  int fd;                 /* active (last) segment, open for writing */
  uint64_t segment_bytes; /* roll over after this size */
  cad_jseg_t *segs;       /* owned, oldest first */
  size_t nsegs, segs_cap;
  cad_jdest_t dests[CAD_JOURNAL_MAX_DESTS];
  uint16_t ndests;
  uint32_t ndest_cap; /* entries in every cad_jseg_t.max_seq */
  cad_journal_stats_t stats;
  char report[512]; /* what recovery found, for the log */
  bool readonly;
  uint64_t zeroed;    /* the active segment is zero-filled up to here */
  bool unsynced;      /* a lazy write is not yet fdatasync'd */
  bool dests_pending; /* the active segment still lacks its DEST records */
} cad_journal_t;

typedef struct cad_journal_opts {
  uint64_t segment_bytes; /* roll over after this size; 0 = 64 MiB */
  bool readonly;          /* recover in memory only: change no file */
  const cad_io_t *io;     /* NULL = cad_io_default(); must outlive the journal */
} cad_journal_opts_t;

/* Open (creating dir if needed and not readonly) and recover.  Returns 0 or
 * a negative error; on error *j is closed.  A read-write open fails with
 * CAD_E_IO when a damaged region cannot be copied aside (nothing is cut
 * without its copy). */
int cad_journal_open_opts(cad_journal_t *j, const char *dir, const cad_journal_opts_t *o);
/* The same with the system's I/O. */
int cad_journal_open(cad_journal_t *j, const char *dir, uint64_t segment_bytes, bool readonly);
/* Cut the zero padding, sync, and (read-write) write the clean-shutdown
 * marker; free everything. */
void cad_journal_close(cad_journal_t *j);

/* Find or create a destination id by name (creating appends a DEST record
 * into the current batch: call before cad_journal_write and commit it).
 * Returns the id (>= 0) or a negative error. */
int cad_journal_dest(cad_journal_t *j, const char *name, bool create);

/* A record to write. */
typedef struct cad_jrec {
  uint8_t type;
  uint16_t dest;
  uint64_t seq; /* MSG: 0 = assign the next one (written back) */
  const void *payload;
  size_t len;
} cad_jrec_t;

/* Write records at the end of the active segment (rolling to a new segment
 * first if it is full) and fdatasync.  All or nothing: on failure (ENOSPC,
 * EIO) nothing is committed and the next write starts at the same offset.
 * MSG records with seq 0 get the destination's next sequence.  Returns 0 or
 * a negative errno. */
int cad_journal_write(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms);

/* The same without fdatasync: the records are written (readers see them)
 * but reach the disk only with the next synced write or cad_journal_sync.
 * For records whose loss in a crash costs a redelivery, not a message (DONE
 * marks). */
int cad_journal_write_lazy(cad_journal_t *j, cad_jrec_t *recs, size_t n, uint64_t now_ms);
/* fdatasync what lazy writes left unsynced (0 when nothing is). */
int cad_journal_sync(cad_journal_t *j);

/* Committed end of the journal. */
cad_jpos_t cad_journal_end(const cad_journal_t *j);
/* Start of the journal (first record of the oldest segment). */
cad_jpos_t cad_journal_begin(const cad_journal_t *j);

/* A record read back. */
typedef struct cad_jread {
  uint8_t type;
  uint16_t dest;
  uint64_t seq;
  uint64_t time_ms;
  cad_jpos_t pos;    /* where the record starts */
  cad_jpos_t next;   /* where the next one starts */
  cad_buf_t payload; /* caller-owned buffer, filled (MSG/DEAD/DEST) */
} cad_jread_t;

/* A sequential reader with its own read-ahead buffer.  Safe to use from any
 * one thread while the commit thread writes (it only reads below `end`). */
typedef struct cad_jreader {
  const cad_io_t *io; /* borrowed */
  char *dir;          /* owned copy */
  int fd;             /* open segment or -1 */
  uint64_t fd_seg;
  cad_jkey_t fd_key; /* framing of the open segment */
  char *chunk;       /* owned read-ahead buffer */
  size_t chunk_cap;
  uint64_t chunk_seg, chunk_off;
  size_t chunk_len;
  uint64_t corrupt_records; /* invalid records skipped */
} cad_jreader_t;

int cad_jreader_init(cad_jreader_t *r, const char *dir);
/* The same with an I/O table (NULL = the system's). */
int cad_jreader_init_io(cad_jreader_t *r, const char *dir, const cad_io_t *io);
void cad_jreader_free(cad_jreader_t *r);

/* Read the first record at or after *pos and below `end` whose destination
 * is want_dest (-1 = any) and type want_type (0 = any); records that do not
 * match are skipped without copying their payload.  At the end of a segment
 * it continues with the next segment number.  Returns 1 (record in *out,
 * *pos moved past it), 0 (reached `end`; *pos = end), or a negative error.
 * An invalid record (bad CRC, impossible length) is skipped by searching for
 * the next valid one, and counted in corrupt_records. */
int cad_jreader_next(cad_jreader_t *r, cad_jpos_t *pos, cad_jpos_t end, int want_dest,
                     uint8_t want_type, cad_jread_t *out);

/* Delete whole segments (never the active one) that hold nothing
 * unfinished and are older than max_age_ms (0 = keep by age forever) or,
 * oldest first, while the journal is larger than max_bytes (0 = no size
 * limit).  Returns the number of segments deleted. */
int cad_journal_retain(cad_journal_t *j, uint64_t max_age_ms, uint64_t max_bytes, uint64_t now_ms,
                       cad_jpos_t min_reader);

/* Total committed bytes in all segments. */
uint64_t cad_journal_bytes(const cad_journal_t *j);

#endif
