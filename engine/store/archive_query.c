/* archive_query.c - reading the archive: search across day files, show one
 * message with its journey (archive.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "archive_int.h"
#include "cad_error.h"
#include "cad_mem.h"

#define DAY_MS 86400000LL
/* A search by channel, type, MSH-4 or MSH-6 in a file indexed through hdr
 * (archive_db.c) matching at most this many combinations reads each one's
 * newest messages in order and merges them; beyond it, messages are read
 * newest first and each one's combination checked. */
#define HDR_BRANCHES 64

typedef struct {
  const char *s; /* NULL: i */
  int64_t i;
} bind_t;

/* SQL text with its parameters, built by appending: the clauses of a part
 * of a query, or a whole statement.  Text and parameters grow as needed
 * (both are bounded by the query's form: values are parameters, never
 * text); nomem is set when they could not. */
typedef struct {
  cad_buf_t sql; /* owned */
  bind_t *b;     /* owned, b[cap] */
  int nb, cap;
  bool nomem;
} sql_t;

typedef struct {
  sql_t hdr;  /* channel, type, MSH-4, MSH-6: columns of both msg and hdr */
  sql_t rest; /* every other filter, on msg m */
  char lo[80], hi[80];
  char fname[CAD_ARCHIVE_MAX_QFIELDS][64];  /* canonical field names */
  char match[4 * CAD_ARCHIVE_MAX_TEXT + 8]; /* the FTS5 query */
  bool fts;                                 /* the query needs the fts table */
  bool count;                               /* SELECT count(*), no order, no limit */
  /* rest has a filter with an index of its own that finds few rows
   * (control id, patient, declared field, text, a rare status): msg_hdr
   * must not be preferred to it. */
  bool selective;
} query_t;

static void add(sql_t *q, const char *clause) {
  if (cad_buf_puts(&q->sql, clause) < 0) q->nomem = true;
}

/* add() of a formatted clause (a column name, a number). */
__attribute__((format(printf, 2, 3))) static void addf(sql_t *q, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (cad_buf_vprintf(&q->sql, fmt, ap) < 0) q->nomem = true;
  va_end(ap);
}

static void bind(sql_t *q, bind_t v) {
  if (q->nb == q->cap) {
    int cap = q->cap ? 2 * q->cap : 16;
    bind_t *b = realloc(q->b, (size_t)cap * sizeof *b);
    if (!b) {
      q->nomem = true;
      return;
    }
    q->b = b;
    q->cap = cap;
  }
  q->b[q->nb++] = v;
}

static void bind_s(sql_t *q, const char *s) { bind(q, (bind_t){s, 0}); }
static void bind_i(sql_t *q, int64_t v) { bind(q, (bind_t){NULL, v}); }

/* p's clauses and parameters after q's. */
static void add_sql(sql_t *q, const sql_t *p) {
  if (p->sql.len && cad_buf_append(&q->sql, p->sql.data, p->sql.len) < 0) q->nomem = true;
  for (int i = 0; i < p->nb; i++) bind(q, p->b[i]);
  q->nomem |= p->nomem;
}

static void sql_free(sql_t *q) {
  cad_buf_free(&q->sql);
  free(q->b);
}

/* Delivery states live on dlv rows, message statuses on msg. */
static bool is_delivery_state(const char *s) {
  return !strcmp(s, "delivered") || !strcmp(s, "retrying") || !strcmp(s, "queued") ||
         !strcmp(s, "failed") || !strcmp(s, "purged") || !strcmp(s, "requeued");
}

static void status_clause(query_t *qq, const char *st) {
  sql_t *q = &qq->rest;
  if (is_delivery_state(st)) {
    add(q, " AND EXISTS(SELECT 1 FROM dlv WHERE dlv.msg=m.id AND dlv.state=?)");
    bind_s(q, st);
  } else if (!strcmp(st, "dead")) {
    add(q,
        " AND (m.status='dead' OR EXISTS(SELECT 1 FROM dlv WHERE dlv.msg=m.id AND "
        "dlv.state='dead'))");
  } else if (!strcmp(st, "rejected")) {
    /* Everything answered AR: a route's reject, an unreadable frame, too big. */
    add(q, " AND m.status IN ('rejected','unparseable','too_big') AND m.status<>'accepted'");
    qq->selective = true;
  } else if (!strcmp(st, "accepted")) {
    /* Most messages: read newest first by id, no index (there is none). */
    add(q, " AND m.status='accepted'");
  } else {
    /* The status index is partial (every status but accepted, which most
     * messages have: ACKs do not pay for an index entry each); this term,
     * written as the index's is, lets the planner use it. */
    add(q, " AND m.status=? AND m.status<>'accepted'");
    bind_s(q, st);
    qq->selective = true;
  }
}

/* The declared fields and the full text of f; false (err set) when one
 * cannot be run. */
static bool extra_clauses(query_t *qq, const cad_archive_query_t *f, char *err, size_t errcap) {
  sql_t *q = &qq->rest;
  for (size_t i = 0; i < f->nfields && i < CAD_ARCHIVE_MAX_QFIELDS; i++) {
    const char *eq = strchr(f->fields[i], '=');
    if (!eq || !cad__arch_field_name(f->fields[i], (size_t)(eq - f->fields[i]), qq->fname[i])) {
      snprintf(err, errcap, "--field: expected NAME=VALUE (a declared name or an HL7 path)");
      return false;
    }
    add(q, " AND m.id IN (SELECT msg FROM fld WHERE name=? AND value=?)");
    bind_s(q, qq->fname[i]);
    bind_s(q, eq + 1);
    qq->selective = true;
  }
  if (f->text) {
    if (strlen(f->text) > CAD_ARCHIVE_MAX_TEXT ||
        !cad__arch_fts_query(f->text, qq->match, sizeof qq->match)) {
      snprintf(err, errcap, "--text: expected 1 to %d bytes with at least one word",
               CAD_ARCHIVE_MAX_TEXT);
      return false;
    }
    add(q, " AND m.id IN (SELECT rowid FROM fts WHERE fts MATCH ?)");
    bind_s(q, qq->match);
    qq->fts = true;
    qq->selective = true;
  }
  return true;
}

/* col = v on hdr or msg. */
static void hdr_eq(sql_t *h, const char *col, const char *v) {
  addf(h, v[0] ? " AND %s = ?" : " AND ifnull(%s, '') = ''", col);
  if (v[0]) bind_s(h, v);
}

static bool build(query_t *qq, const cad_archive_query_t *f, bool count, char *auth_buf,
                  size_t auth_cap, char *err, size_t errcap) {
  memset(qq, 0, sizeof *qq);
  qq->count = count;
  sql_t *h = &qq->hdr, *q = &qq->rest;
  if (f->since_ms) {
    add(q, " AND m.id >= ?");
    bind_i(q, f->since_ms * (1LL << 20));
  }
  if (f->until_ms) {
    add(q, " AND m.id < ?");
    bind_i(q, f->until_ms * (1LL << 20));
  }
  if (f->control_id) {
    add(q, " AND m.msh10 = ?");
    bind_s(q, f->control_id);
    qq->selective = true;
  }
  /* Unqualified: the same clauses read hdr and msg (archive_db.c).  An
   * empty value finds the messages without one (hdr holds '', msg NULL). */
  if (f->channel) hdr_eq(h, "channel", f->channel);
  if (f->sender) hdr_eq(h, "msh4", f->sender);
  if (f->receiver) hdr_eq(h, "msh6", f->receiver);
  if (f->type && (strchr(f->type, '^') || !f->type[0])) {
    hdr_eq(h, "type", f->type);
  } else if (f->type) {
    /* "ORU": ORU alone or ORU^anything ('_' follows '^'), on the index. */
    snprintf(qq->lo, sizeof qq->lo, "%s^", f->type);
    snprintf(qq->hi, sizeof qq->hi, "%s_", f->type);
    add(h, " AND (type = ? OR (type > ? AND type < ?))");
    bind_s(h, f->type);
    bind_s(h, qq->lo);
    bind_s(h, qq->hi);
  }
  if (f->status) status_clause(qq, f->status);
  if (f->dest) {
    add(q, " AND m.id IN (SELECT msg FROM dlv WHERE dlv.dest=?)");
    bind_s(q, f->dest);
  }
  if (f->patient) {
    const char *caret = strchr(f->patient, '^');
    if (caret) {
      snprintf(auth_buf, auth_cap, "%.*s", (int)(caret - f->patient), f->patient);
      add(q, " AND m.id IN (SELECT msg FROM pid WHERE value=? AND auth=?)");
      bind_s(q, auth_buf);
      bind_s(q, caret + 1);
    } else {
      add(q, " AND m.id IN (SELECT msg FROM pid WHERE value=?)");
      bind_s(q, f->patient);
    }
    qq->selective = true;
  }
  if (!extra_clauses(qq, f, err, errcap)) return false;
  if (h->nomem || q->nomem) {
    snprintf(err, errcap, "search: out of memory");
    return false;
  }
  return true;
}

static const char *col(sqlite3_stmt *s, int i) {
  const unsigned char *t = sqlite3_column_text(s, i);
  return t ? (const char *)t : "";
}

static void add_limit(sql_t *st, uint64_t left) {
  add(st, " ORDER BY m.id DESC LIMIT ?");
  bind_i(st, (int64_t)left);
}

static const char SELECT_ROWS[] =
    "SELECT m.id, m.t, m.channel, m.peer, m.status, m.reason, m.ack, m.type, m.msh10,"
    " m.msh4, m.msh6, m.size, (SELECT group_concat(coalesce(d.dest, '#' || d.qid) || ':' ||"
    " d.state, ',') FROM dlv d WHERE d.msg = m.id) FROM msg m WHERE 1";
static const char SELECT_COUNT[] = "SELECT count(*) FROM msg m WHERE 1";

static int sql_prepare(sqlite3 *db, const sql_t *st, sqlite3_stmt **out);

/* The hdr ids of db matching q's header filters: the first `max` into ids;
 * returns how many matched, counted up to `upto` + 1, or < 0. */
static int hdr_ids(sqlite3 *db, const query_t *q, int64_t *ids, int max, int upto) {
  sql_t st = {0};
  add(&st, "SELECT id FROM hdr WHERE 1");
  add_sql(&st, &q->hdr);
  add(&st, " LIMIT ?");
  bind_i(&st, upto + 1);
  sqlite3_stmt *s = NULL;
  int rc = sql_prepare(db, &st, &s);
  sql_free(&st);
  if (rc < 0) return rc;
  int n = 0;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (n < max) ids[n] = sqlite3_column_int64(s, 0);
    n++;
  }
  sqlite3_finalize(s);
  return rc == SQLITE_DONE ? n : CAD_E_IO;
}

/* st prepared on db with its parameters bound into *out. */
static int sql_prepare(sqlite3 *db, const sql_t *st, sqlite3_stmt **out) {
  if (st->nomem) return CAD_E_NOMEM;
  if (sqlite3_prepare_v2(db, st->sql.data, (int)st->sql.len, out, NULL) != SQLITE_OK)
    return CAD_E_IO;
  for (int i = 0; i < st->nb; i++) {
    if (st->b[i].s) sqlite3_bind_text(*out, i + 1, st->b[i].s, -1, SQLITE_STATIC);
    else sqlite3_bind_int64(*out, i + 1, st->b[i].i);
  }
  return 0;
}

/* How many messages match q in db, counted up to `upto` (msg_hdr over the
 * set of combinations). */
static int64_t count_upto(sqlite3 *db, const query_t *q, int64_t upto) {
  sql_t st = {0};
  add(&st, "SELECT count(*) FROM (SELECT 1 FROM msg m WHERE m.hdr IN (SELECT id FROM hdr WHERE 1");
  add_sql(&st, &q->hdr);
  add(&st, ")");
  add_sql(&st, &q->rest);
  add(&st, " LIMIT ?)");
  bind_i(&st, upto);
  sqlite3_stmt *s = NULL;
  int64_t n = sql_prepare(db, &st, &s);
  sql_free(&st);
  if (n < 0) return n;
  n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : CAD_E_IO;
  sqlite3_finalize(s);
  return n;
}

/* The statement for one file into st; 0 when nothing can match.
 *
 * A file of an earlier version (or a search without header filters) reads
 * the columns, on their own indexes.  A file indexed through hdr: the
 * matching combinations first; one: msg_hdr in id order, LIMIT stops it;
 * up to HDR_BRANCHES: each one's newest `left` (msg_hdr in order) merged,
 * so nothing is sorted but those; a count: msg_hdr for the set of
 * combinations.  More combinations: when fewer than SORT_MAX messages
 * match (a value spread over many combinations that few messages have),
 * those are read through msg_hdr and sorted; when more match, or more than
 * MANY_COMBOS combinations do (a sender that makes a combination of nearly
 * every message), or another filter finds few rows on its own index
 * (selective): the messages newest first (or those of that index), each
 * one's combination looked up (one row of hdr), so neither every match is
 * read and sorted nor the set of combinations built. */
#define SORT_MAX 20000
#define MANY_COMBOS 4096
static int assemble(sqlite3 *db, bool hdr_only, const query_t *q, uint64_t left, sql_t *st) {
  add(st, q->count ? SELECT_COUNT : SELECT_ROWS);
  if (!q->hdr.sql.len) {
    add_sql(st, &q->rest);
  } else if (!hdr_only) {
    add_sql(st, &q->hdr);
    add_sql(st, &q->rest);
  } else {
    int64_t ids[HDR_BRANCHES];
    int k = hdr_ids(db, q, ids, HDR_BRANCHES, MANY_COMBOS);
    if (k <= 0) return k; /* no combination: no message */
    bool sort = false;
    if (k > HDR_BRANCHES && k <= MANY_COMBOS && !q->selective && !q->count) {
      int64_t n = count_upto(db, q, SORT_MAX);
      if (n < 0) return (int)n;
      sort = n < SORT_MAX;
    }
    if (k == 1 && !q->selective) {
      addf(st, " AND m.hdr = %lld", (long long)ids[0]);
      add_sql(st, &q->rest);
    } else if (k <= HDR_BRANCHES && !q->selective && !q->count) {
      add(st, " AND m.id IN (");
      for (int i = 0; i < k; i++) {
        addf(st, "%sSELECT id FROM (SELECT m.id FROM msg m WHERE m.hdr = %lld",
             i ? " UNION ALL " : "", (long long)ids[i]);
        add_sql(st, &q->rest);
        add_limit(st, left);
        add(st, ")");
      }
      add(st, ")");
    } else {
      /* The unqualified columns of q->hdr name hdr's inside the subquery.
       * A selective filter's count reads that filter's few rows and looks
       * each one's combination up, as its search does, rather than building
       * the set of combinations first (a sender may make one per message). */
      bool in_set = sort || (q->count && !q->selective);
      add(st, in_set ? " AND m.hdr IN (SELECT id FROM hdr WHERE 1"
                     : " AND EXISTS(SELECT 1 FROM hdr WHERE hdr.id = m.hdr");
      add_sql(st, &q->hdr);
      add(st, ")");
      add_sql(st, &q->rest);
    }
  }
  if (!q->count) add_limit(st, left);
  return st->nomem ? CAD_E_NOMEM : 1;
}

/* One file, in one read transaction (the combinations and the messages
 * read from the same snapshot): rows into cb, at most `left` (count:
 * *counted += its count).  Returns rows, or < 0. */
static int search_file(cad__arch_db_t *d, const query_t *q, uint64_t left, cad_archive_row_cb cb,
                       void *ud, bool *stop, uint64_t *counted) {
  sqlite3 *db = d->db;
  if (q->fts && !cad__arch_has(db, "fts")) return 0; /* created with a channel's first message */
  if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) return CAD_E_IO;
  sql_t st = {0};
  int rc = assemble(db, d->hdr_only, q, left, &st);
  sqlite3_stmt *s = NULL;
  if (rc > 0) {
    int prc = sql_prepare(db, &st, &s);
    if (prc < 0) rc = prc;
  }
  sql_free(&st);
  int n = 0;
  if (rc > 0 && q->count) {
    rc = sqlite3_step(s) == SQLITE_ROW ? 0 : CAD_E_IO;
    if (rc == 0) *counted += (uint64_t)sqlite3_column_int64(s, 0);
  } else if (rc > 0) {
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      cad_archive_row_t r = {(uint64_t)sqlite3_column_int64(s, 0),
                             sqlite3_column_int64(s, 1),
                             col(s, 2),
                             col(s, 3),
                             col(s, 4),
                             col(s, 5),
                             col(s, 6),
                             col(s, 7),
                             col(s, 8),
                             col(s, 9),
                             col(s, 10),
                             (uint64_t)sqlite3_column_int64(s, 11),
                             col(s, 12)};
      n++;
      if (cb(ud, &r)) {
        *stop = true;
        break;
      }
    }
    rc = rc != SQLITE_ROW && rc != SQLITE_DONE ? CAD_E_IO : n;
  }
  sqlite3_finalize(s);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  return rc;
}

static void query_free(query_t *q) {
  sql_free(&q->hdr);
  sql_free(&q->rest);
  free(q);
}

/* Search (count: count) the day files of dir in q's range, newest first. */
static int run(const char *dir, const cad_archive_query_t *f, bool count, cad_archive_row_cb cb,
               void *ud, uint64_t *counted, char *err, size_t errcap) {
  query_t *q = malloc(sizeof *q);
  char auth[256];
  if (!q) return CAD_E_NOMEM;
  if (!build(q, f, count, auth, sizeof auth, err, errcap)) {
    query_free(q);
    return CAD_E_INVAL;
  }
  char **names;
  size_t n;
  int rc = cad__arch_list(dir, &names, &n);
  if (rc < 0) {
    snprintf(err, errcap, "%s: %s", dir, cad_strerror(rc));
    query_free(q);
    return rc;
  }
  uint64_t left = count ? UINT64_MAX : f->limit ? f->limit : 50;
  int total = 0;
  bool stop = false;
  for (size_t i = n; i-- > 0 && left > 0 && !stop;) {
    int64_t day = cad_archive_day_of(names[i]);
    if (f->since_ms && (day + 1) * DAY_MS <= f->since_ms) break;
    if (f->until_ms && day * DAY_MS >= f->until_ms) continue;
    cad__arch_db_t *db;
    if ((rc = cad__arch_db_open(dir, day, false, true, &db)) < 0) {
      snprintf(err, errcap, "%s/%s: %s", dir, names[i], cad_strerror(rc));
      break;
    }
    rc = search_file(db, q, left, cb, ud, &stop, counted);
    if (rc == CAD_E_NOMEM) snprintf(err, errcap, "search: out of memory");
    else if (rc < 0) snprintf(err, errcap, "%s/%s: %s", dir, names[i], sqlite3_errmsg(db->db));
    cad__arch_db_close(db);
    if (rc < 0) break;
    total += rc;
    left -= (uint64_t)rc;
  }
  cad__arch_list_free(names, n);
  query_free(q);
  return rc < 0 ? rc : total;
}

int cad_archive_search(const char *dir, const cad_archive_query_t *f, cad_archive_row_cb cb,
                       void *ud, char *err, size_t errcap) {
  uint64_t unused = 0;
  return run(dir, f, false, cb, ud, &unused, err, errcap);
}

int cad_archive_count(const char *dir, const cad_archive_query_t *f, uint64_t *n, char *err,
                      size_t errcap) {
  *n = 0;
  int rc = run(dir, f, true, NULL, NULL, n, err, errcap);
  return rc < 0 ? rc : 0;
}

/* ---- show ------------------------------------------------------------------- */

static void fmt_time(int64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t l = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + l, 40 - l, ".%03dZ", (int)(ms % 1000));
}

/* The attempts of delivery (qid, seq) in db. */
static void print_attempts(sqlite3 *db, int qid, int64_t seq) {
  sqlite3_stmt *s;
  /* A delivery done at its first attempt has no att row: the delivery
   * row itself says when and what the receiver answered. */
  if (sqlite3_prepare_v2(db,
                         "SELECT n, t, outcome, detail FROM att WHERE qid=?1 AND seq=?2"
                         " UNION ALL SELECT 1, t, 'delivered', detail FROM dlv WHERE qid=?1 AND"
                         " seq=?2 AND state='delivered' AND attempts=1 AND NOT EXISTS(SELECT 1"
                         " FROM att WHERE qid=?1 AND seq=?2) ORDER BY 1",
                         -1, &s, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int(s, 1, qid);
  sqlite3_bind_int64(s, 2, seq);
  for (int k = 1; sqlite3_step(s) == SQLITE_ROW; k++) {
    char t[40];
    fmt_time(sqlite3_column_int64(s, 1), t);
    printf("    attempt %-3d %s  %-9s %s\n", k, t, col(s, 2), col(s, 3));
  }
  sqlite3_finalize(s);
}

/* A delivery whose attempts were recorded in a later day's file (the
 * message was received shortly before midnight). */
static void print_later(const char *dir, int64_t day, int qid, int64_t seq) {
  for (int64_t d = day + 1; d <= day + 2; d++) {
    cad__arch_db_t *x;
    if (cad__arch_db_open(dir, d, false, true, &x) < 0) continue;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(x->db, "SELECT qid, state FROM dlv WHERE qid=? AND seq=?", -1, &s,
                           NULL) == SQLITE_OK) {
      sqlite3_bind_int(s, 1, qid);
      sqlite3_bind_int64(s, 2, seq);
      if (sqlite3_step(s) == SQLITE_ROW) {
        printf("    (continued in a later day file: %s)\n", col(s, 1));
        print_attempts(x->db, qid, seq);
      }
      sqlite3_finalize(s);
    }
    cad__arch_db_close(x);
  }
}

static void print_journey(const char *dir, cad__arch_db_t *db, uint64_t id) {
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT qid, qid, seq, coalesce(dest, '#' || qid), state, attempts, t,"
                         " detail FROM dlv WHERE msg=? ORDER BY qid, seq",
                         -1, &s, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
  int n = 0;
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (n++ == 0) printf("\njourney\n");
    printf("  %s (queue record %lld): %s after %d attempt(s)%s%s\n", col(s, 3),
           (long long)sqlite3_column_int64(s, 2), col(s, 4), sqlite3_column_int(s, 5),
           sqlite3_column_text(s, 7) ? ", last: " : "", col(s, 7));
    print_attempts(db->db, sqlite3_column_int(s, 1), sqlite3_column_int64(s, 2));
    if (!strcmp(col(s, 4), "queued"))
      print_later(dir, db->day, sqlite3_column_int(s, 1), sqlite3_column_int64(s, 2));
  }
  if (n == 0) printf("\njourney\n  (no destination records)\n");
  sqlite3_finalize(s);
}

/* The body of message id, decompressed, through body. */
static int put_body(sqlite3 *db, uint64_t id, bool header, cad_archive_body_fn body, void *ud) {
  char *raw;
  size_t len;
  int rc = cad__arch_body(db, id, &raw, &len);
  if (rc < 0) return rc;
  if (header) printf("\nmessage (%lu bytes)\n", (unsigned long)len);
  body(ud, raw, len);
  free(raw);
  return 0;
}

static int print_msg(sqlite3 *db, sqlite3_stmt *s, cad_archive_body_fn body, void *ud) {
  char t[40];
  fmt_time(sqlite3_column_int64(s, 1), t);
  printf("id          %llu\n", (unsigned long long)sqlite3_column_int64(s, 0));
  printf("received    %s\n", t);
  printf("channel     %s\n", col(s, 2));
  printf("peer        %s (connection %lld)\n", col(s, 3), (long long)sqlite3_column_int64(s, 4));
  printf("size        %lld bytes\n", (long long)sqlite3_column_int64(s, 5));
  printf("status      %s%s%s\n", col(s, 6), sqlite3_column_text(s, 7) ? ": " : "", col(s, 7));
  if (sqlite3_column_type(s, 9) != SQLITE_NULL)
    printf("dead letter %lld\n", (long long)sqlite3_column_int64(s, 9));
  printf("ack sent    %s\n", col(s, 8));
  printf("header      MSH-3 %s  MSH-4 %s  MSH-5 %s  MSH-6 %s\n", col(s, 10), col(s, 11), col(s, 12),
         col(s, 13));
  printf("            MSH-7 %s  MSH-9 %s  MSH-10 %s  MSH-11 %s  MSH-12 %s\n", col(s, 14),
         col(s, 15), col(s, 16), col(s, 17), col(s, 18));
  return put_body(db, (uint64_t)sqlite3_column_int64(s, 0), true, body, ud);
}

int cad_archive_show(const char *dir, uint64_t id, bool body_only, cad_archive_body_fn body,
                     void *ud, char *err, size_t errcap) {
  int64_t day = (int64_t)(id >> 20) / DAY_MS;
  cad__arch_db_t *db;
  int rc = cad__arch_db_open(dir, day, false, true, &db);
  if (rc < 0) {
    snprintf(err, errcap, "message %llu: not in the archive", (unsigned long long)id);
    return rc;
  }
  sqlite3_stmt *s;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT id, t, channel, peer, conn, size, status, reason, ack, dl_seq,"
                         " msh3, msh4, msh5, msh6, msh7, type, msh10, msh11, msh12, body, body_len"
                         " FROM msg WHERE id=?",
                         -1, &s, NULL) != SQLITE_OK) {
    snprintf(err, errcap, "%s", sqlite3_errmsg(db->db));
    cad__arch_db_close(db);
    return CAD_E_IO;
  }
  sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
  if (sqlite3_step(s) != SQLITE_ROW) {
    snprintf(err, errcap, "message %llu: not in the archive", (unsigned long long)id);
    rc = CAD_E_NOTFOUND;
  } else {
    rc = body_only ? put_body(db->db, id, false, body, ud) : print_msg(db->db, s, body, ud);
    if (rc < 0) snprintf(err, errcap, "message %llu: body unreadable", (unsigned long long)id);
  }
  sqlite3_finalize(s);
  if (rc == 0 && !body_only) print_journey(dir, db, id);
  cad__arch_db_close(db);
  return rc;
}

int64_t cad_archive_parse_time(const char *s, int64_t now_ms) {
  char *end;
  size_t n = strlen(s);
  if (n >= 2 && strchr("smhd", s[n - 1])) {
    static const int64_t unit[] = {1000, 60000, 3600000, 86400000};
    errno = 0;
    double v = strtod(s, &end);
    if (end != s + n - 1 || errno || !(v >= 0 && v <= 1e8)) return -1;
    int64_t back = (int64_t)(v * (double)unit[strchr("smhd", s[n - 1]) - "smhd"]);
    return back > now_ms ? 0 : now_ms - back;
  }
  if (n && strspn(s, "0123456789") == n) {
    errno = 0;
    unsigned long long ms = strtoull(s, &end, 10);
    return errno || ms > (unsigned long long)INT64_MAX / 2 ? -1 : (int64_t)ms;
  }
  int y, mo, d, h = 0, mi = 0, sec = 0, k = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &k) != 3) return -1;
  const char *t = s + k;
  if (*t == 'T' || *t == ' ') {
    int k2 = 0;
    if (sscanf(t + 1, "%2d:%2d%n", &h, &mi, &k2) != 2) return -1;
    t += 1 + k2;
    if (*t == ':') {
      int k3 = 0;
      if (sscanf(t + 1, "%2d%n", &sec, &k3) != 1) return -1;
      t += 1 + k3;
    }
  }
  if (*t == 'Z') t++;
  if (*t || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
      mi < 0 || mi > 59 || sec < 0 || sec > 60)
    return -1;
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  time_t e = timegm(&tm);
  return e < 0 ? -1 : (int64_t)e * 1000;
}
