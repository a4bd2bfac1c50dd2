/* archive_db.c - one day file of the archive: schema, writes, header
 * fields, the list of day files and retention (archive_int.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "archive_int.h"
#include "cad_error.h"
#include "hl7_charset.h"

#define DAY_MS 86400000LL

/* The message id (primary key) orders by time, so it is the time index:
 * a time range is a range of ids.  pid, dlv and att are clustered on their
 * keys (WITHOUT ROWID): one b-tree each, the fewest the writer must touch.
 *
 * Channel, type (MSH-9.1^9.2), MSH-4 and MSH-6 are indexed together: hdr
 * holds each combination of the four once (a few per feed and day), msg
 * names its row (msg.hdr) and msg_hdr orders each combination's messages
 * by id.  One index entry per message instead of four: each costs the
 * writer ~2.5 us.  A search by any of the four finds the combinations first
 * (hdr is small), then reads msg_hdr (archive_query.c).  Key columns of hdr
 * hold '' for an absent value (NULLs would be distinct in its unique
 * index); msg keeps NULL.  hdr's own indexes cost nothing per message (a
 * row is written once per new combination) and keep the first step quick
 * when a sender makes a combination of nearly every message (a MSH-4 of
 * its own each time): then each message pays hdr's four entries and
 * msg_hdr, one more than four indexes on msg would cost. */
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS msg(id INTEGER PRIMARY KEY, t INTEGER NOT NULL, channel TEXT,"
    " peer TEXT, conn INTEGER, size INTEGER, status TEXT NOT NULL, reason TEXT, ack TEXT,"
    " dl_seq INTEGER, msh3 TEXT, msh4 TEXT, msh5 TEXT, msh6 TEXT, msh7 TEXT, type TEXT,"
    " msh10 TEXT, msh11 TEXT, msh12 TEXT, body BLOB, body_len INTEGER, blk INTEGER,"
    " blk_off INTEGER, hdr INTEGER);"
    "CREATE TABLE IF NOT EXISTS blk(id INTEGER PRIMARY KEY, z BLOB, raw_len INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS hdr(id INTEGER PRIMARY KEY, channel TEXT NOT NULL, type TEXT NOT"
    " NULL, msh4 TEXT NOT NULL, msh6 TEXT NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS hdr_key ON hdr(channel, type, msh4, msh6);"
    "CREATE INDEX IF NOT EXISTS hdr_type ON hdr(type);"
    "CREATE INDEX IF NOT EXISTS hdr_msh4 ON hdr(msh4);"
    "CREATE INDEX IF NOT EXISTS hdr_msh6 ON hdr(msh6);"
    "CREATE INDEX IF NOT EXISTS msg_rare ON msg(status, id) WHERE status <> 'accepted';"
    "CREATE INDEX IF NOT EXISTS msg_ctl ON msg(msh10);"
    "CREATE TABLE IF NOT EXISTS pid(value TEXT NOT NULL, auth TEXT NOT NULL, msg INTEGER NOT NULL,"
    " PRIMARY KEY(value, auth, msg)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS dlv(qid INTEGER NOT NULL, seq INTEGER NOT NULL, msg INTEGER,"
    " dest TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, t INTEGER,"
    " detail TEXT, PRIMARY KEY(qid, seq)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS dlv_msg ON dlv(msg);"
    "CREATE INDEX IF NOT EXISTS dlv_dest ON dlv(dest, msg);"
    "CREATE TABLE IF NOT EXISTS att(qid INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " n INTEGER NOT NULL, t INTEGER NOT NULL, outcome TEXT NOT NULL, detail TEXT,"
    " PRIMARY KEY(qid, seq, n)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS evt(t INTEGER NOT NULL, kind TEXT NOT NULL, who TEXT, dest TEXT,"
    " seq INTEGER, new_seq INTEGER, n INTEGER, detail TEXT);"
    "CREATE TABLE IF NOT EXISTS fld(name TEXT NOT NULL, value TEXT NOT NULL, msg INTEGER NOT NULL,"
    " PRIMARY KEY(name, value, msg)) WITHOUT ROWID;";

/* ---- header fields ---------------------------------------------------------- */

/* The n-th (0-based) piece of [p, p+len) split on sep. */
static cad__arch_span_t piece(const char *p, size_t len, char sep, int n) {
  if (!p) return (cad__arch_span_t){NULL, 0}; /* an empty record has no bytes at all */
  size_t i = 0;
  for (int k = 0; k < n; k++) {
    while (i < len && p[i] != sep) i++;
    if (i >= len) return (cad__arch_span_t){NULL, 0};
    i++;
  }
  size_t s = i;
  while (i < len && p[i] != sep) i++;
  return (cad__arch_span_t){p + s, i - s};
}

static size_t seg_end(const char *p, size_t len, size_t from) {
  while (from < len && p[from] != '\r' && p[from] != '\n') from++;
  return from;
}

static void read_pid(const char *p, size_t len, char fs, const char enc[4],
                     cad__arch_fields_t *out) {
  size_t i = 0;
  while (i < len) {
    size_t e = seg_end(p, len, i);
    if (e - i > 4 && memcmp(p + i, "PID", 3) == 0 && p[i + 3] == fs) {
      cad__arch_span_t f = piece(p + i, e - i, fs, 3);
      for (int r = 0; f.len && out->npid < CAD_ARCH_MAX_PIDS; r++) {
        cad__arch_span_t rep = piece(f.p, f.len, enc[1], r);
        if (!rep.p) break;
        cad__arch_span_t v = piece(rep.p, rep.len, enc[0], 0);
        cad__arch_span_t auth = piece(rep.p, rep.len, enc[0], 3);
        /* CX.4 is an HD: its first subcomponent names the authority. */
        if (auth.len) auth = piece(auth.p, auth.len, enc[3], 0);
        if (!v.len) continue;
        out->pid_value[out->npid] = v;
        out->pid_auth[out->npid++] = auth;
      }
      return;
    }
    i = e + 1;
  }
}

/* The indexed PID-3 values of a message whose MSH-18 names a set other than
 * ASCII or UTF-8, in UTF-8 (a value too long for its buffer stays raw). */
static void utf8_one(int cs, cad__arch_span_t *v, char *buf, size_t cap) {
  bool ascii = true;
  for (size_t i = 0; i < v->len && ascii; i++) ascii = (unsigned char)v->p[i] < 0x80;
  if (ascii || v->len * 3 >= cap) return;
  cad_arena_t a;
  cad_arena_init(&a, 512, 4096);
  cad_str_t out;
  if (cad_charset_decode(cs, (cad_str_t){v->p, v->len}, &a, &out, NULL) == 0 && out.len < cap) {
    memcpy(buf, out.p, out.len);
    *v = (cad__arch_span_t){buf, out.len};
  }
  cad_arena_free(&a);
}

static void utf8_pids(cad__arch_span_t msh18, char rep, cad__arch_fields_t *out) {
  cad__arch_span_t first = piece(msh18.p, msh18.len, rep, 0);
  int cs = first.len ? cad_charset_find(first.p, first.len) : CAD_CS_NONE;
  if (cs == CAD_CS_NONE || cs == CAD_CS_UTF8 || cs == CAD_CS_ASCII) return;
  for (size_t i = 0; i < out->npid; i++) {
    utf8_one(cs, &out->pid_value[i], out->utf8[2 * i], sizeof out->utf8[0]);
    utf8_one(cs, &out->pid_auth[i], out->utf8[2 * i + 1], sizeof out->utf8[0]);
  }
}

void cad__arch_fields(const char *p, size_t len, cad__arch_fields_t *out) {
  memset(out, 0, sizeof *out);
  if (len < 8 || memcmp(p, "MSH", 3) != 0) return;
  char fs = p[3];
  char enc[4] = {'^', '~', '\\', '&'};
  size_t e = seg_end(p, len, 0);
  cad__arch_span_t msh2 = piece(p, e, fs, 1);
  for (size_t k = 0; k < 4 && k < msh2.len; k++) enc[k] = msh2.p[k];
  /* MSH-n (n >= 2) is piece n-1: MSH-1 is the separator itself. */
  for (int n = 3; n <= 12; n++) out->msh[n] = piece(p, e, fs, n - 1);
  cad__arch_span_t t = out->msh[9];
  cad__arch_span_t t1 = piece(t.p, t.len, enc[0], 0), t2 = piece(t.p, t.len, enc[0], 1);
  if (t1.len) {
    snprintf(out->type, sizeof out->type, "%.*s%s%.*s", (int)(t1.len < 20 ? t1.len : 20), t1.p,
             t2.len ? "^" : "", (int)(t2.len < 20 ? t2.len : 20), t2.len ? t2.p : "");
  }
  read_pid(p, len, fs, enc, out);
  utf8_pids(piece(p, e, fs, 17), enc[1], out);
}

/* ---- header combinations (hdr) ------------------------------------------ */

/* A combination's key: each of the four values as a length byte and its
 * bytes, HKEY_CAP bytes at most (a longer key is not cached: looked up each
 * time). */
#define CAD__ARCH_HSLOTS 512
#define HKEY_CAP 242
struct cad__arch_hslot {
  int64_t id; /* 0 = empty */
  uint32_t hash;
  uint16_t len;
  char key[HKEY_CAP];
};

/* ---- one day file --------------------------------------------------------- */

static int sql_err(sqlite3 *db) {
  int e = db ? sqlite3_errcode(db) : SQLITE_ERROR;
  return e == SQLITE_NOMEM ? CAD_E_NOMEM : e == SQLITE_FULL ? -ENOSPC : CAD_E_IO;
}

static void day_path(const char *dir, int64_t day, char *out, size_t cap) {
  char name[16];
  cad_archive_day_name(day * DAY_MS, name);
  snprintf(out, cap, "%s/%s", dir, name);
}

/* Whether msg has column `name`. */
static int has_column(sqlite3 *db, const char *name, bool *has) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('msg') WHERE name=?", -1, &s, NULL) !=
      SQLITE_OK)
    return sql_err(db);
  sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
  *has = sqlite3_step(s) == SQLITE_ROW;
  sqlite3_finalize(s);
  return 0;
}

/* A file of an earlier version: msg gets the block columns, then the hdr
 * column (its rows before have none: the file keeps its four header
 * indexes, and is searched through them). */
static int upgrade(sqlite3 *db) {
  bool has;
  int rc = has_column(db, "blk", &has);
  if (rc < 0) return rc;
  if (!has) {
    /* msg_status became the partial msg_rare. */
    sqlite3_exec(db, "DROP INDEX IF EXISTS msg_status", NULL, NULL, NULL);
    if (sqlite3_exec(db,
                     "ALTER TABLE msg ADD COLUMN blk INTEGER;"
                     " ALTER TABLE msg ADD COLUMN blk_off INTEGER;",
                     NULL, NULL, NULL) != SQLITE_OK)
      return sql_err(db);
  }
  if ((rc = has_column(db, "hdr", &has)) < 0) return rc;
  if (!has &&
      sqlite3_exec(db, "ALTER TABLE msg ADD COLUMN hdr INTEGER", NULL, NULL, NULL) != SQLITE_OK)
    return sql_err(db);
  /* msg_hdr only in a file without the four header indexes (a new one): an
   * older file is searched through those, and building msg_hdr there would
   * read its every row for an index never used. */
  if (cad__arch_has(db, "msg_type")) return 0;
  return sqlite3_exec(db, "CREATE INDEX IF NOT EXISTS msg_hdr ON msg(hdr, id)", NULL, NULL, NULL) ==
                 SQLITE_OK
             ? 0
             : sql_err(db);
}

bool cad__arch_has(sqlite3 *db, const char *name) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name=?", -1, &s, NULL) != SQLITE_OK)
    return false;
  sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
  bool yes = sqlite3_step(s) == SQLITE_ROW;
  sqlite3_finalize(s);
  return yes;
}

static int prepare_all(cad__arch_db_t *d) {
  struct {
    sqlite3_stmt **st;
    const char *sql;
  } q[] = {
      {&d->ins_msg,
       "INSERT OR REPLACE INTO msg(id,t,channel,peer,conn,size,status,reason,ack,dl_seq,msh3,"
       "msh4,msh5,msh6,msh7,type,msh10,msh11,msh12,body,body_len,blk,blk_off,hdr) VALUES(?,?,?,?,"
       "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"},
      {&d->sel_hdr, "SELECT id FROM hdr WHERE channel=? AND type=? AND msh4=? AND msh6=?"},
      {&d->ins_hdr, "INSERT INTO hdr(channel,type,msh4,msh6) VALUES(?,?,?,?)"},
      {&d->done_dlv,
       "INSERT INTO dlv(qid,seq,msg,dest,state,attempts,t,detail) VALUES(?,?,?,?,'delivered',1,?,"
       "?)"},
      {&d->ins_blk, "INSERT OR REPLACE INTO blk(id,z,raw_len) VALUES(?,?,?)"},
      {&d->ins_pid, "INSERT OR IGNORE INTO pid(value,auth,msg) VALUES(?,?,?)"},
      {&d->ins_dlv,
       "INSERT INTO dlv(qid,seq,msg,dest,state) VALUES(?,?,?,?,'queued') ON CONFLICT(qid,seq)"
       " DO UPDATE SET msg=excluded.msg, dest=coalesce(dlv.dest, excluded.dest)"},
      {&d->upd_dlv,
       "UPDATE dlv SET state=?, attempts=attempts+?, t=?, detail=? WHERE qid=? AND seq=?"
       " RETURNING attempts"},
      /* dest apart: an UPDATE naming an indexed column rewrites its index
       * entry, and the name is known at once but for rare rows. */
      {&d->name_dlv, "UPDATE dlv SET dest=? WHERE qid=? AND seq=? AND dest IS NULL"},
      {&d->ins_att, "INSERT OR REPLACE INTO att(qid,seq,n,t,outcome,detail) VALUES(?,?,?,?,?,?)"},
      {&d->new_dlv, "INSERT INTO dlv(qid,seq,dest,state) VALUES(?,?,?,'queued')"},
  };
  for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
    if (sqlite3_prepare_v3(d->db, q[i].sql, -1, SQLITE_PREPARE_PERSISTENT, q[i].st, NULL) !=
        SQLITE_OK)
      return sql_err(d->db);
  return 0;
}

/* Before the first database is opened: SQLite keeps no memory statistics,
 * which take a process-wide mutex around every allocation and which the
 * engine never reads (the writer's CPU per message 29.3-29.5 -> 27.3-27.5
 * us, `bench_archive -n 200000`, three runs each).  sqlite3_config() must
 * not run beside another SQLite call: in the engine every database is
 * opened here, and pthread_once holds other openers back until it is done;
 * the only other opens, `caduceus archive stats|check` (cli_archive_cmd.c),
 * run in a process of one thread.  Refused, and harmless, once SQLite is
 * initialized. */
static void sqlite_setup(void) { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

int cad__arch_db_open(const char *dir, int64_t day, bool create, bool readonly,
                      cad__arch_db_t **out) {
  char path[4200];
  day_path(dir, day, path, sizeof path);
  if (create) {
    /* Create it 0600 first: SQLite gives its -wal and -shm files the
     * permissions of the database file. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    close(fd);
  } else if (access(path, F_OK) != 0) {
    return CAD_E_NOTFOUND;
  }
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, sqlite_setup);
  cad__arch_db_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->day = day;
  int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  int rc = 0;
  if (sqlite3_open_v2(path, &d->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    rc = sql_err(d->db);
    goto fail;
  }
  sqlite3_busy_timeout(d->db, 5000);
  if (!readonly) {
    /* WAL with synchronous=NORMAL: a commit is not an fsync (a power cut
     * may lose the last transactions, never corrupt the file); the cache
     * holds the hot ends of the indexes (8 MiB: 5.6 % less of the writer's CPU than
     * 2 MiB on a 1,000,000-message archive, memory still bounded). */
    /* auto_vacuum (set before the first table; a no-op on an older file):
     * rows deleted by retention per channel give their pages back. */
    const char *setup =
        "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-8192;"
        " PRAGMA wal_autocheckpoint=16384;";
    if (sqlite3_exec(d->db, setup, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(d->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK || (rc = upgrade(d->db)) < 0 ||
        (rc = prepare_all(d)) < 0) {
      rc = rc ? rc : sql_err(d->db);
      goto fail;
    }
  }
  /* (see the struct) */
  d->hdr_only = cad__arch_has(d->db, "msg_hdr") && !cad__arch_has(d->db, "msg_type");
  *out = d;
  return 0;
fail:
  cad__arch_db_close(d);
  return rc;
}

void cad__arch_db_close(cad__arch_db_t *d) {
  if (!d) return;
  /* Every statement of ours (one left would keep the file open and its WAL
   * unchecked; FTS5's own statements are its to finalize). */
  sqlite3_stmt *all[] = {d->ins_msg,  d->ins_pid,  d->ins_dlv, d->upd_dlv,    d->ins_att,
                         d->new_dlv,  d->ins_fld,  d->ins_fts, d->ins_ftsrow, d->ins_blk,
                         d->name_dlv, d->done_dlv, d->sel_hdr, d->ins_hdr};
  _Static_assert(sizeof all / sizeof all[0] == CAD__ARCH_NSTMT, "every statement finalized");
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
  sqlite3_close_v2(d->db);
  free(d->hcache);
  free(d);
}

/* The hdr ids learned since the last commit may be gone: forget them all. */
static void forget_hdr(cad__arch_db_t *d) {
  if (d->hcache) memset(d->hcache, 0, CAD__ARCH_HSLOTS * sizeof *d->hcache);
}

/* IMMEDIATE: the write lock is taken here, waiting (busy timeout) for
 * another writer of the file (`caduceus archive reindex`); a transaction
 * whose first statement reads (the hdr lookup) would get SQLITE_BUSY at
 * its first write at once, without waiting. */
int cad__arch_db_begin(cad__arch_db_t *d) {
  if (sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return sql_err(d->db);
  d->in_tx = true;
  return 0;
}

int cad__arch_db_commit(cad__arch_db_t *d) {
  d->in_tx = false;
  if (sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) return 0;
  int rc = sql_err(d->db);
  sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
  /* The ids hdr rows got in it are gone with it. */
  forget_hdr(d);
  return rc;
}

/* Before a write: is the transaction the caller opened still there? */
static int tx_alive(cad__arch_db_t *d) {
  if (!d->in_tx || !sqlite3_get_autocommit(d->db)) return 0;
  forget_hdr(d);
  return CAD_E_IO;
}

static void bind_text(sqlite3_stmt *s, int i, const char *p) {
  if (p) sqlite3_bind_text(s, i, p, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(s, i);
}

static void bind_span(sqlite3_stmt *s, int i, cad__arch_span_t v) {
  if (v.len) sqlite3_bind_text(s, i, v.p, (int)v.len, SQLITE_STATIC);
  else sqlite3_bind_null(s, i);
}

static int step_done(sqlite3 *db, sqlite3_stmt *s) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_err(db);
}

/* ---- header combinations: the writer's lookup -------------------------- */

static bool hkey_put(char *key, size_t *n, const char *p, size_t len) {
  if (*n + 1 + len > HKEY_CAP) return false; /* so len < 256: it fits its byte */
  key[(*n)++] = (char)len;
  if (len) memcpy(key + *n, p, len);
  *n += len;
  return true;
}

static uint32_t hkey_hash(const char *p, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h;
}

static void bind_key(sqlite3_stmt *s, int i, const char *p, size_t len) {
  sqlite3_bind_text(s, i, len ? p : "", (int)len, SQLITE_STATIC);
}

/* One step of hdr's select or insert with the four key columns bound. */
static int step_hdr(sqlite3_stmt *q, const char *channel, size_t cl, const char *type, size_t tl,
                    cad__arch_span_t m4, cad__arch_span_t m6) {
  bind_key(q, 1, channel, cl);
  bind_key(q, 2, type, tl);
  bind_key(q, 3, m4.p, m4.len);
  bind_key(q, 4, m6.p, m6.len);
  return sqlite3_step(q);
}

/* The hdr id of (channel, type, msh4, msh6), inserted when new. */
static int hdr_id(cad__arch_db_t *d, const char *channel, const char *type, cad__arch_span_t m4,
                  cad__arch_span_t m6, int64_t *out) {
  size_t cl = channel ? strlen(channel) : 0, tl = strlen(type);
  char key[HKEY_CAP];
  size_t n = 0;
  bool cacheable = hkey_put(key, &n, channel, cl) && hkey_put(key, &n, type, tl) &&
                   hkey_put(key, &n, m4.p, m4.len) && hkey_put(key, &n, m6.p, m6.len);
  uint32_t h = cacheable ? hkey_hash(key, n) : 0;
  struct cad__arch_hslot *slot = NULL;
  if (cacheable) {
    if (!d->hcache) d->hcache = calloc(CAD__ARCH_HSLOTS, sizeof *d->hcache);
    cacheable = d->hcache != NULL; /* no memory for it: looked up each time */
  }
  if (cacheable) {
    /* Four places to look; a full neighbourhood gives up its first. */
    for (uint32_t k = 0; k < 4; k++) {
      struct cad__arch_hslot *x = &d->hcache[(h + k) & (CAD__ARCH_HSLOTS - 1)];
      if (x->id && x->hash == h && x->len == n && !memcmp(x->key, key, n)) {
        *out = x->id;
        return 0;
      }
      if (!slot && !x->id) slot = x;
    }
    if (!slot) slot = &d->hcache[h & (CAD__ARCH_HSLOTS - 1)];
  }
  /* Known to the file, or added to it. */
  int64_t id = 0;
  int rc = step_hdr(d->sel_hdr, channel, cl, type, tl, m4, m6);
  if (rc == SQLITE_ROW) id = sqlite3_column_int64(d->sel_hdr, 0);
  sqlite3_reset(d->sel_hdr);
  sqlite3_clear_bindings(d->sel_hdr);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sql_err(d->db);
  if (!id) {
    rc = step_hdr(d->ins_hdr, channel, cl, type, tl, m4, m6);
    sqlite3_reset(d->ins_hdr);
    sqlite3_clear_bindings(d->ins_hdr);
    if (rc != SQLITE_DONE) return sql_err(d->db);
    id = sqlite3_last_insert_rowid(d->db);
  }
  if (slot) {
    slot->id = id;
    slot->hash = h;
    slot->len = (uint16_t)n;
    memcpy(slot->key, key, n);
  }
  *out = id;
  return 0;
}

int cad__arch_db_insert(cad__arch_db_t *d, const cad__arch_msg_t *m) {
  sqlite3_stmt *s = d->ins_msg;
  const cad__arch_fields_t *f = m->f;
  sqlite3_bind_int64(s, 1, (sqlite3_int64)m->id);
  sqlite3_bind_int64(s, 2, m->t_ms);
  bind_text(s, 3, m->channel);
  bind_text(s, 4, m->peer);
  sqlite3_bind_int64(s, 5, (sqlite3_int64)m->conn);
  sqlite3_bind_int64(s, 6, (sqlite3_int64)m->size);
  bind_text(s, 7, m->status);
  bind_text(s, 8, m->reason);
  bind_text(s, 9, m->ack);
  if (m->dl_seq) sqlite3_bind_int64(s, 10, (sqlite3_int64)m->dl_seq);
  for (int n = 3; n <= 7; n++) bind_span(s, 11 + n - 3, f->msh[n]); /* msh3..msh7: 11..15 */
  bind_text(s, 16, f->type[0] ? f->type : NULL);
  bind_span(s, 17, f->msh[10]);
  bind_span(s, 18, f->msh[11]);
  bind_span(s, 19, f->msh[12]);
  if (m->z) sqlite3_bind_blob(s, 20, m->z, (int)m->zlen, SQLITE_STATIC);
  sqlite3_bind_int64(s, 21, (sqlite3_int64)m->rawlen);
  if (m->blk) {
    sqlite3_bind_int64(s, 22, m->blk);
    sqlite3_bind_int64(s, 23, (sqlite3_int64)m->blk_off);
  }
  int64_t hid;
  int rc = tx_alive(d);
  if (rc == 0) rc = hdr_id(d, m->channel, f->type, f->msh[4], f->msh[6], &hid);
  if (rc < 0) {
    sqlite3_clear_bindings(s);
    return rc;
  }
  sqlite3_bind_int64(s, 24, hid);
  rc = step_done(d->db, s);
  for (size_t i = 0; rc == 0 && i < f->npid; i++) {
    bind_span(d->ins_pid, 1, f->pid_value[i]);
    /* No authority: '' (a key column is never NULL). */
    sqlite3_bind_text(d->ins_pid, 2, f->pid_auth[i].len ? f->pid_auth[i].p : "",
                      (int)f->pid_auth[i].len, SQLITE_STATIC);
    sqlite3_bind_int64(d->ins_pid, 3, (sqlite3_int64)m->id);
    rc = step_done(d->db, d->ins_pid);
  }
  for (size_t i = 0; rc == 0 && i < m->nq; i++) {
    if (m->att_t && m->att_t[i]) {
      /* Delivered at its first attempt, known now: one insert.  A row
       * already there (attempts recorded before the message) refuses it:
       * then the usual way. */
      sqlite3_stmt *s2 = d->done_dlv;
      sqlite3_bind_int(s2, 1, m->qids[i]);
      sqlite3_bind_int64(s2, 2, (sqlite3_int64)m->seqs[i]);
      sqlite3_bind_int64(s2, 3, (sqlite3_int64)m->id);
      bind_text(s2, 4, m->names[i]);
      sqlite3_bind_int64(s2, 5, m->att_t[i]);
      bind_text(s2, 6, m->att_detail[i]);
      int st = sqlite3_step(s2);
      sqlite3_reset(s2);
      sqlite3_clear_bindings(s2);
      if (st == SQLITE_DONE) continue;
      if (st != SQLITE_CONSTRAINT) {
        rc = sql_err(d->db);
        break;
      }
    }
    sqlite3_bind_int(d->ins_dlv, 1, m->qids[i]);
    sqlite3_bind_int64(d->ins_dlv, 2, (sqlite3_int64)m->seqs[i]);
    sqlite3_bind_int64(d->ins_dlv, 3, (sqlite3_int64)m->id);
    bind_text(d->ins_dlv, 4, m->names[i]);
    rc = step_done(d->db, d->ins_dlv);
    if (rc == 0 && m->att_t && m->att_t[i])
      rc = cad__arch_db_attempt(d, m->qids[i], m->seqs[i], CAD_ARCH_DELIVERED, m->att_detail[i],
                                m->att_t[i], NULL, false);
  }
  return rc;
}

int cad__arch_db_block(cad__arch_db_t *d, int64_t id, const void *z, size_t zlen, size_t raw_len) {
  int rc = tx_alive(d);
  if (rc < 0) return rc;
  sqlite3_bind_int64(d->ins_blk, 1, id);
  sqlite3_bind_blob(d->ins_blk, 2, z, (int)zlen, SQLITE_STATIC);
  sqlite3_bind_int64(d->ins_blk, 3, (sqlite3_int64)raw_len);
  return step_done(d->db, d->ins_blk);
}

/* zlib stream z/zlen of raw_len bytes into a new buffer. */
static int inflate_all(const void *z, size_t zlen, size_t raw_len, char **out) {
  char *raw = malloc(raw_len ? raw_len : 1);
  if (!raw) return CAD_E_NOMEM;
  uLongf len = (uLongf)raw_len;
  if (raw_len && (!z || uncompress((Bytef *)raw, &len, z, (uLong)zlen) != Z_OK || len != raw_len)) {
    free(raw);
    return CAD_E_IO;
  }
  *out = raw;
  return 0;
}

int cad__arch_body(sqlite3 *db, uint64_t id, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  sqlite3_stmt *s;
  /* A file of an earlier version (opened read-only) has no block columns. */
  if (sqlite3_prepare_v2(db, "SELECT body, body_len, blk, blk_off FROM msg WHERE id=?", -1, &s,
                         NULL) != SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT body, body_len, NULL, NULL FROM msg WHERE id=?", -1, &s,
                         NULL) != SQLITE_OK)
    return CAD_E_IO;
  sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
  int rc = CAD_E_NOTFOUND;
  if (sqlite3_step(s) == SQLITE_ROW) {
    size_t blen = (size_t)sqlite3_column_int64(s, 1);
    if (sqlite3_column_type(s, 2) == SQLITE_NULL) {
      rc = inflate_all(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), blen, out);
    } else {
      int64_t blk = sqlite3_column_int64(s, 2);
      size_t off = (size_t)sqlite3_column_int64(s, 3);
      sqlite3_stmt *b;
      rc = CAD_E_IO;
      if (sqlite3_prepare_v2(db, "SELECT z, raw_len FROM blk WHERE id=?", -1, &b, NULL) ==
          SQLITE_OK) {
        sqlite3_bind_int64(b, 1, blk);
        char *all = NULL;
        size_t raw_len;
        if (sqlite3_step(b) == SQLITE_ROW &&
            (raw_len = (size_t)sqlite3_column_int64(b, 1)) >= off + blen &&
            (rc = inflate_all(sqlite3_column_blob(b, 0), (size_t)sqlite3_column_bytes(b, 0),
                              raw_len, &all)) == 0) {
          memmove(all, all + off, blen);
          *out = all;
        }
        sqlite3_finalize(b);
      }
    }
    if (rc == 0) *len = blen;
  }
  sqlite3_finalize(s);
  return rc;
}

int cad__arch_db_attempt(cad__arch_db_t *d, uint16_t qid, uint64_t seq, cad_archive_att_t what,
                         const char *detail, int64_t t_ms, const char *name, bool create) {
  static const char *const state[] = {"delivered", "retrying", "failed", "dead"};
  static const char *const outcome[] = {"delivered", "retry", "failed", "dead"};
  int rc = tx_alive(d);
  if (rc < 0) return rc;
  int inc = what == CAD_ARCH_DEAD ? 0 : 1;
  /* One statement finds and updates the delivery row (RETURNING gives its
   * attempts); only a row not there yet takes the insert and a second try. */
  int64_t before = -1; /* attempts recorded so far */
  for (int pass = 0; pass < 2 && before < 0; pass++) {
    if (pass == 1) {
      if (!create) return CAD_E_NOTFOUND;
      sqlite3_bind_int(d->new_dlv, 1, qid);
      sqlite3_bind_int64(d->new_dlv, 2, (sqlite3_int64)seq);
      bind_text(d->new_dlv, 3, name);
      if ((rc = step_done(d->db, d->new_dlv)) < 0) return rc;
    }
    sqlite3_bind_text(d->upd_dlv, 1, state[what], -1, SQLITE_STATIC);
    sqlite3_bind_int(d->upd_dlv, 2, inc);
    sqlite3_bind_int64(d->upd_dlv, 3, t_ms);
    bind_text(d->upd_dlv, 4, detail);
    sqlite3_bind_int(d->upd_dlv, 5, qid);
    sqlite3_bind_int64(d->upd_dlv, 6, (sqlite3_int64)seq);
    int st = sqlite3_step(d->upd_dlv);
    if (st == SQLITE_ROW) {
      before = sqlite3_column_int64(d->upd_dlv, 0) - inc;
      st = sqlite3_step(d->upd_dlv);
    }
    sqlite3_reset(d->upd_dlv);
    sqlite3_clear_bindings(d->upd_dlv);
    if (st != SQLITE_DONE) return sql_err(d->db);
  }
  if (before < 0) return CAD_E_IO;
  if (name) {
    sqlite3_bind_text(d->name_dlv, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(d->name_dlv, 2, qid);
    sqlite3_bind_int64(d->name_dlv, 3, (sqlite3_int64)seq);
    if ((rc = step_done(d->db, d->name_dlv)) < 0) return rc;
  }
  /* The usual case, delivered at the first attempt, needs no att row: the
   * delivery row holds its time and answer (show prints it as attempt 1). */
  if (before == 0 && what == CAD_ARCH_DELIVERED) return 0;
  /* Attempt n is row n; a dead letter is the row after the last attempt. */
  sqlite3_bind_int(d->ins_att, 1, qid);
  sqlite3_bind_int64(d->ins_att, 2, (sqlite3_int64)seq);
  sqlite3_bind_int64(d->ins_att, 3, before + 1);
  sqlite3_bind_int64(d->ins_att, 4, t_ms);
  sqlite3_bind_text(d->ins_att, 5, outcome[what], -1, SQLITE_STATIC);
  bind_text(d->ins_att, 6, detail);
  return step_done(d->db, d->ins_att);
}

/* ---- day files and retention ----------------------------------------------- */

void cad_archive_day_name(int64_t ms, char out[16]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  /* Years 0..9999: a 13-character name. */
  unsigned y = (unsigned)(tm.tm_year + 1900) % 10000u, mo = (unsigned)(tm.tm_mon + 1) % 100u,
           d = (unsigned)tm.tm_mday % 100u;
  snprintf(out, 16, "%04u-%02u-%02u.db", y, mo, d);
}

int64_t cad_archive_day_of(const char *name) {
  int y, mo, d;
  char tail[8];
  if (strlen(name) != 13 || sscanf(name, "%4d-%2d-%2d%3s", &y, &mo, &d, tail) != 4 ||
      strcmp(tail, ".db") != 0)
    return -1;
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  time_t t = timegm(&tm);
  return t < 0 ? -1 : (int64_t)t / 86400;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int cad__arch_list(const char *dir, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  DIR *dp = opendir(dir);
  if (!dp) return errno == ENOENT ? 0 : -errno;
  size_t cap = 0;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(dp))) {
    if (cad_archive_day_of(e->d_name) < 0) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      char **g = realloc(*out, cap * sizeof *g);
      if (!g) {
        rc = CAD_E_NOMEM;
        break;
      }
      *out = g;
    }
    if (!((*out)[*n] = strdup(e->d_name))) {
      rc = CAD_E_NOMEM;
      break;
    }
    (*n)++;
  }
  closedir(dp);
  if (rc < 0) {
    cad__arch_list_free(*out, *n);
    *out = NULL;
    *n = 0;
    return rc;
  }
  if (*n) qsort(*out, *n, sizeof **out, cmp_str);
  return 0;
}

void cad__arch_list_free(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

/* Bytes of a day file with its -wal and -shm. */
static uint64_t file_bytes(const char *dir, const char *name) {
  static const char *const sfx[] = {"", "-wal", "-shm"};
  uint64_t sum = 0;
  for (int i = 0; i < 3; i++) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s%s", dir, name, sfx[i]);
    if (stat(p, &st) == 0) sum += (uint64_t)st.st_size;
  }
  return sum;
}

static void remove_day(const char *dir, const char *name) {
  static const char *const sfx[] = {"-wal", "-shm", ""};
  for (int i = 0; i < 3; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s%s", dir, name, sfx[i]);
    unlink(p);
  }
}

int cad_archive_prune(const char *dir, int64_t now_ms, uint64_t retain_ms, uint64_t max_bytes,
                      uint64_t *freed) {
  char **names;
  size_t n;
  int rc = cad__arch_list(dir, &names, &n);
  if (rc < 0) return rc;
  int64_t today = now_ms / DAY_MS;
  int64_t keep_from = today - (int64_t)((retain_ms + DAY_MS - 1) / DAY_MS);
  uint64_t total = 0, *sizes = calloc(n ? n : 1, sizeof *sizes);
  if (!sizes) {
    cad__arch_list_free(names, n);
    return CAD_E_NOMEM;
  }
  for (size_t i = 0; i < n; i++) total += sizes[i] = file_bytes(dir, names[i]);
  int deleted = 0;
  *freed = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t day = cad_archive_day_of(names[i]);
    if (day >= today) break; /* never today's (nor a later one) */
    bool expired = day < keep_from;
    bool over = max_bytes && total > max_bytes;
    if (!expired && !over) continue;
    remove_day(dir, names[i]);
    total -= sizes[i];
    *freed += sizes[i];
    deleted++;
  }
  free(sizes);
  cad__arch_list_free(names, n);
  return deleted;
}
