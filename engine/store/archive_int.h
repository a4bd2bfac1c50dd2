/* archive_int.h - shared between archive.c (writer), archive_db.c (one day
 * file) and archive_query.c (reading).  Not a public interface. */
#ifndef CAD_ARCHIVE_INT_H
#define CAD_ARCHIVE_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive.h"
#include "cad_mem.h"

#define CAD_ARCHIVE_MAX_DESTS 4096
#define CAD_ARCH_MAX_PIDS 16

typedef struct {
  const char *p;
  size_t len;
} cad__arch_span_t;

/* The indexed header fields of a message, as spans into its bytes (raw,
 * still escaped).  type is MSH-9.1^MSH-9.2 (a copy). */
typedef struct cad__arch_fields {
  cad__arch_span_t msh[13]; /* [3..12] used */
  char type[64];
  cad__arch_span_t pid_value[CAD_ARCH_MAX_PIDS], pid_auth[CAD_ARCH_MAX_PIDS];
  size_t npid;
  /* PID-3 values and authorities of a message in a single-byte set (MSH-18
   * 8859/1, ...) converted to UTF-8, so a search in UTF-8 finds them; the
   * spans above then point here.  (hl7_charset.h) */
  char utf8[2 * CAD_ARCH_MAX_PIDS][96];
} cad__arch_fields_t;

/* Read MSH-3..12 and every PID-3 repetition of the first PID, tolerantly
 * (a frame that is not a message gives empty fields). */
void cad__arch_fields(const char *p, size_t len, cad__arch_fields_t *out);

/* One day file, with its prepared statements (writer) or read-only. */
/* The prepared statements a day file holds (cad__arch_db_close finalizes
 * each: keep this count in step with the fields below). */
#define CAD__ARCH_NSTMT 14
/* The header combinations the writer has met (archive_db.c). */
typedef struct cad__arch_hslot cad__arch_hslot_t;
typedef struct cad__arch_db {
  int64_t day;
  sqlite3 *db;
  sqlite3_stmt *ins_msg, *ins_pid, *ins_dlv, *upd_dlv, *ins_att, *new_dlv, *ins_blk, *name_dlv,
      *done_dlv, *sel_hdr, *ins_hdr;
  /* Prepared on first use (the fts table is created then). */
  sqlite3_stmt *ins_fld, *ins_fts, *ins_ftsrow;
  /* The file indexes channel, type, MSH-4 and MSH-6 through the hdr table
   * alone (msg_hdr): a file created by this version.  A file of an earlier
   * version keeps its four indexes (msg_channel, msg_type, msg_msh4,
   * msg_msh6), which cover its every row, and is searched through them. */
  bool hdr_only;
  /* Writer: cad__arch_db_begin opened a transaction not yet committed.
   * SQLite ends a transaction by itself on some errors (I/O, no memory,
   * disk full): the writes that follow would then each commit alone, with
   * hdr ids the rollback took back, so they are refused instead. */
  bool in_tx;
  /* Writer: hdr ids by combination, CAD__ARCH_HSLOTS slots (owned, calloc'd
   * on first use, freed by cad__arch_db_close); forgotten when a
   * transaction fails (its new ids were rolled back). */
  cad__arch_hslot_t *hcache;
} cad__arch_db_t;

/* Whether db has a table or index of that name. */
bool cad__arch_has(sqlite3 *db, const char *name);

int cad__arch_db_open(const char *dir, int64_t day, bool create, bool readonly,
                      cad__arch_db_t **out);
void cad__arch_db_close(cad__arch_db_t *db);
int cad__arch_db_begin(cad__arch_db_t *db);
/* On failure the transaction is rolled back (and the hdr cache forgotten). */
int cad__arch_db_commit(cad__arch_db_t *db);

typedef struct cad__arch_msg {
  uint64_t id;
  int64_t t_ms;
  const char *channel, *peer;
  uint64_t conn, size;
  const char *status, *reason, *ack;
  uint64_t dl_seq;
  const cad__arch_fields_t *f;
  const void *z; /* the zlib-compressed body, or NULL: in block `blk` */
  size_t zlen, rawlen;
  const uint16_t *qids;
  const uint64_t *seqs;
  const char *const *names;
  size_t nq;
  int64_t blk;      /* the body's block (table blk; 0 = none), at byte blk_off */
  uint64_t blk_off; /* of the block's uncompressed bytes */
  /* Per destination record, its first attempt when it is already known to
   * have delivered (the same batch): att_t[i] != 0, with att_detail[i].
   * The row is then written delivered at once (no update after).  NULL =
   * none. */
  const int64_t *att_t;
  const char *const *att_detail;
} cad__arch_msg_t;

int cad__arch_db_insert(cad__arch_db_t *db, const cad__arch_msg_t *m);
/* Store block `id`: the zlib stream z/zlen of raw_len bytes holding the
 * bodies of messages whose rows name it (one channel's, in one file). */
int cad__arch_db_block(cad__arch_db_t *db, int64_t id, const void *z, size_t zlen, size_t raw_len);
/* The body of message `id` in db (in msg.body or in its block),
 * decompressed into *out (malloc'd, the caller frees; *len bytes).
 * CAD_E_NOTFOUND when there is no such message, CAD_E_IO when the body
 * cannot be read. */
int cad__arch_body(sqlite3 *db, uint64_t id, char **out, size_t *len);
/* Record an attempt on (qid, seq): CAD_E_NOTFOUND when this file has no
 * such delivery row and `create` is false. */
int cad__arch_db_attempt(cad__arch_db_t *db, uint16_t qid, uint64_t seq, cad_archive_att_t what,
                         const char *detail, int64_t t_ms, const char *name, bool create);

/* A channel's settings, as the writer keeps them (archive_index.c). */
typedef struct cad__arch_chan {
  char *name;
  cad_archive_field_t *fields; /* names owned */
  size_t nfields;
  bool fts;
  uint64_t retain_ms;
} cad__arch_chan_t;

int cad__arch_chans_copy(const cad_archive_chan_t *in, size_t n, cad__arch_chan_t **out);
void cad__arch_chans_free(cad__arch_chan_t *c, size_t n);
/* Index message `id` (bytes p/len) of channel ch in db: its declared
 * fields (fld) and, with fts, its text.  `ar` is scratch (reset here). */
int cad__arch_db_index(cad__arch_db_t *db, const cad__arch_chan_t *ch, uint64_t id, const char *p,
                       size_t len, cad_arena_t *ar);
/* The canonical name of a --field NAME (an HL7 path formatted, else as
 * written) into out[64]; false when too long. */
bool cad__arch_field_name(const char *name, size_t len, char out[64]);
/* q->text as an FTS5 query of quoted words into out; false when it has no
 * word or does not fit. */
bool cad__arch_fts_query(const char *text, char *out, size_t cap);

/* cad_archive_attempt at a given time (benchmarks write history). */
int cad__archive_attempt_at(cad_archive_t *a, uint16_t qid, uint64_t seq, cad_archive_att_t what,
                            const char *detail, int64_t t_ms);

/* The day files of dir, oldest first (names: "YYYY-MM-DD.db"); *out owned
 * by the caller (free each and the array). */
int cad__arch_list(const char *dir, char ***out, size_t *n);
void cad__arch_list_free(char **names, size_t n);

#endif
