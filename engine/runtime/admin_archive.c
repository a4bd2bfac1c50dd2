/* admin_archive.c - the archive through the admin API (admin_int.h):
 *   GET  /api/v1/messages?patient=&control_id=&type=&channel=&destination=
 *        &status=&sender=&receiver=&since=&until=&limit=&field=NAME=VALUE...
 *        &text=   (cad_archive_search; text needs the analyst role)
 *   GET  /api/v1/messages/ID            the record, ACK and journey; with
 *        ?body=1 the message too (role analyst; every body view is audited)
 *   POST /api/v1/messages/ID/resend     {"destination": NAME}: the archived
 *        body appended to that destination's queue as a new message
 * The archive is read (SQLite) on the libuv thread pool; the answer, the
 * audit line and a resend's queue append are made back on the loop.  A
 * search is bounded by its limit (at most 500 rows).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_int.h"
#include "archive_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "hl7.h"
#include "log.h"

#define SEARCH_MAX 500
#define DAY_MS 86400000LL
#define PARAM_MAX 256
#define EDITS_MAX 32  /* paths a resend may set */
#define TREE_MAX 5000 /* leaves shown of one message */

static void iso(int64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t l = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + l, 40 - l, ".%03dZ", (int)(ms % 1000));
}

static bool known_status(const char *s) {
  static const char *const all[] = {"accepted", "filtered",  "rejected", "unparseable",
                                    "too_big",  "error",     "dead",     "queued",
                                    "retrying", "delivered", "failed"};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp(s, all[i]) == 0) return true;
  return false;
}

static const char *archive_dir(cad_admin_t *a, char *buf, size_t cap) {
  const cad_admin_ctl_t *ctl = a->view.ctl;
  if (!ctl || !ctl->data_dir) return NULL;
  snprintf(buf, cap, "%s/archive", ctl->data_dir);
  return buf;
}

static int add_row(void *ud, const cad_archive_row_t *r) {
  json_t *arr = ud;
  char t[40];
  iso(r->t_ms, t);
  json_t *o =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "id", "",
                "received", t, "channel", r->channel, "peer", r->peer, "status", r->status,
                "reason", r->reason, "ack", r->ack, "type", r->type, "control_id", r->control_id,
                "sender", r->sender, "size", (json_int_t)r->size, "destinations", r->dests);
  if (!o) return 1;
  /* Ids pass 2^53: a string, so JavaScript keeps every digit. */
  char id[24];
  snprintf(id, sizeof id, "%llu", (unsigned long long)r->id);
  json_object_set_new(o, "id", json_string(id));
  json_object_set_new(o, "receiver", json_string(r->receiver));
  return json_array_append_new(arr, o) < 0;
}

typedef struct body_out {
  char *p;
  size_t len;
  bool nomem;
} body_out_t;

/* ---- off the loop --------------------------------------------------------------
 * SQLite reads (and a message's tree) run on the libuv thread pool; the
 * answer, the audit line and any queue append are made back on the loop. */

#define NKEYS 11

typedef struct arch_work {
  uv_work_t w;
  cad__admin_job_t *j;
  void (*run)(struct arch_work *x);  /* thread pool */
  void (*done)(struct arch_work *x); /* loop; answers j */
  char dir[4200];
  char v[NKEYS][PARAM_MAX];                        /* search: the parameters, which q points into */
  char fields[CAD_ARCHIVE_MAX_QFIELDS][PARAM_MAX]; /* field=NAME=VALUE, repeated */
  char text[PARAM_MAX];                            /* text= (full text) */
  cad_archive_query_t q;
  uint64_t id;
  bool want_body;
  json_t *doc; /* the answer being built (owned) */
  json_t *set; /* resend: the edits (a reference) */
  int status, rc;
  char err[512];
  body_out_t b;
  size_t nedits;
  char why[160];
  uint16_t qid;
} arch_work_t;

static void work_run(uv_work_t *w) {
  arch_work_t *x = w->data;
  x->run(x);
}

static void work_after(uv_work_t *w, int status) {
  arch_work_t *x = w->data;
  if (status < 0) x->rc = status; /* cancelled: answered as unavailable */
  x->done(x);
  json_decref(x->doc);
  json_decref(x->set);
  free(x->b.p);
  free(x);
}

/* Start x for call c (a deferred answer); on failure c is answered and x freed. */
static void offload(cad__admin_call_t *c, arch_work_t *x, const char *action, const char *target) {
  if (!c->a->loop) {
    free(x);
    return cad__admin_error(c->res, 503, "unavailable", "the admin API is not running");
  }
  if (!(x->j = cad__admin_job_new(c, action, target))) {
    json_decref(x->set);
    free(x);
    return;
  }
  x->w.data = x;
  int rc = uv_queue_work(c->a->loop, &x->w, work_run, work_after);
  if (rc < 0) {
    cad__admin_job_answer(
        x->j, 503,
        json_pack("{s:s, s:s}", "error", "unavailable", "detail", "could not start the read"));
    json_decref(x->set);
    free(x);
  }
}

static void run_search(arch_work_t *x) {
  x->doc = json_array();
  if (!x->doc) {
    x->rc = CAD_E_NOMEM;
    return;
  }
  x->rc = cad_archive_search(x->dir, &x->q, add_row, x->doc, x->err, sizeof x->err);
}

static void done_search(arch_work_t *x) {
  if (x->rc < 0 && x->rc != CAD_E_NOTFOUND && (!x->doc || json_array_size(x->doc) == 0)) {
    CAD_LOG(CAD_LOG_WARN, "admin.search_failed", NULL, "%s", x->err[0] ? x->err : "cancelled");
    return cad__admin_job_answer(
        x->j, 503,
        json_pack("{s:s, s:s}", "error", "unavailable", "detail", "the archive could not be read"));
  }
  json_t *arr = x->doc;
  x->doc = NULL;
  cad__admin_job_answer(x->j, 200, json_pack("{s:o}", "messages", arr));
}

void cad__admin_archive_search(cad__admin_call_t *c) {
  static const char *const keys[NKEYS] = {"patient",     "control_id", "type",   "channel",
                                          "destination", "status",     "sender", "receiver",
                                          "since",       "until",      "limit"};
  arch_work_t *x = calloc(1, sizeof *x);
  if (!x) return cad__admin_error(c->res, 500, "internal", "out of memory");
  bool have[NKEYS];
  for (size_t i = 0; i < NKEYS; i++) {
    int q = cad__admin_query(c->req, keys[i], x->v[i], PARAM_MAX);
    if (q < 0) {
      char d[96];
      snprintf(d, sizeof d, "%s: malformed or longer than %d bytes", keys[i], PARAM_MAX - 1);
      free(x);
      return cad__admin_error(c->res, 400, "bad_request", d);
    }
    have[i] = q == 1 && x->v[i][0];
  }
  cad_archive_query_t *q = &x->q;
  const char **slots[] = {&q->patient, &q->control_id, &q->type,   &q->channel,
                          &q->dest,    &q->status,     &q->sender, &q->receiver};
  for (size_t i = 0; i < 8; i++)
    if (have[i]) *slots[i] = x->v[i];
  const char *bad = NULL;
  int64_t now = (int64_t)cad_now_ms();
  uint64_t limit = 50;
  if (q->status && !known_status(q->status)) bad = "status: not a known status";
  else if (have[8] && (q->since_ms = cad_archive_parse_time(x->v[8], now)) < 0)
    bad = "since: expected 2h, 7d, ms or a date";
  else if (have[9] && (q->until_ms = cad_archive_parse_time(x->v[9], now)) < 0)
    bad = "until: expected 2h, 7d, ms or a date";
  else if (have[10] && (cad__admin_u64(x->v[10], &limit) < 0 || limit == 0))
    bad = "limit: expected a positive number";
  if (bad) {
    free(x);
    return cad__admin_error(c->res, 400, "bad_request", bad);
  }
  q->limit = limit > SEARCH_MAX ? SEARCH_MAX : limit;
  /* field=NAME=VALUE (declared index fields, repeated) and text= (full
   * text: it probes message bodies, so it needs the analyst role) */
  char extra[PARAM_MAX]; /* a field beyond the last slot: read only to refuse it */
  for (unsigned i = 0; !bad; i++) {
    char *dst = q->nfields < CAD_ARCHIVE_MAX_QFIELDS ? x->fields[q->nfields] : extra;
    int f = cad__admin_query_nth(c->req, "field", i, dst, PARAM_MAX);
    if (f == 0) break;
    if (f < 0 || !strchr(dst, '=') || dst[0] == '=') {
      bad = "field: expected NAME=VALUE";
    } else if (dst == extra) {
      bad = "field: at most 8";
    } else {
      q->fields[q->nfields] = dst;
      q->nfields++;
    }
  }
  int tq = bad ? 0 : cad__admin_query(c->req, "text", x->text, sizeof x->text);
  if (tq < 0) bad = "text: malformed or too long";
  if (bad) {
    free(x);
    return cad__admin_error(c->res, 400, "bad_request", bad);
  }
  if (tq == 1 && x->text[0]) {
    if (!c->tok || c->tok->role < CAD_ROLE_ANALYST) {
      free(x);
      return cad__admin_error(c->res, 403, "forbidden",
                              "a full-text search reads bodies: it needs the analyst role");
    }
    q->text = x->text;
  }
  if (!archive_dir(c->a, x->dir, sizeof x->dir)) {
    free(x);
    return cad__admin_error(c->res, 503, "unavailable", "no archive");
  }
  x->run = run_search;
  x->done = done_search;
  offload(c, x, "search", "archive");
}

/* ---- one message ------------------------------------------------------------ */

static const char *col(sqlite3_stmt *s, int i) {
  const unsigned char *t = sqlite3_column_text(s, i);
  return t ? (const char *)t : "";
}

static json_t *attempts(sqlite3 *db, int qid, int64_t seq) {
  json_t *arr = json_array();
  sqlite3_stmt *s;
  if (!arr || sqlite3_prepare_v2(db,
                                 "SELECT t, outcome, detail FROM att WHERE qid=? AND seq=?"
                                 " ORDER BY n LIMIT 1000",
                                 -1, &s, NULL) != SQLITE_OK)
    return arr;
  sqlite3_bind_int(s, 1, qid);
  sqlite3_bind_int64(s, 2, seq);
  while (sqlite3_step(s) == SQLITE_ROW) {
    char t[40];
    iso(sqlite3_column_int64(s, 0), t);
    json_array_append_new(
        arr, json_pack("{s:s, s:s, s:s}", "time", t, "outcome", col(s, 1), "detail", col(s, 2)));
  }
  sqlite3_finalize(s);
  return arr;
}

static json_t *journey(cad__arch_db_t *db, uint64_t id) {
  json_t *arr = json_array();
  sqlite3_stmt *s;
  if (!arr || sqlite3_prepare_v2(db->db,
                                 "SELECT qid, seq, coalesce(dest, '#' || qid), state, attempts,"
                                 " detail FROM dlv WHERE msg=? ORDER BY qid, seq LIMIT 1000",
                                 -1, &s, NULL) != SQLITE_OK)
    return arr;
  sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
  while (sqlite3_step(s) == SQLITE_ROW) {
    json_t *o = json_pack("{s:s, s:I, s:s, s:i, s:s, s:o}", "destination", col(s, 2), "queue_seq",
                          (json_int_t)sqlite3_column_int64(s, 1), "state", col(s, 3), "attempts",
                          sqlite3_column_int(s, 4), "detail", col(s, 5), "attempt_log",
                          attempts(db->db, sqlite3_column_int(s, 0), sqlite3_column_int64(s, 1)));
    if (o) json_array_append_new(arr, o);
  }
  sqlite3_finalize(s);
  return arr;
}

static json_t *message(const char *dir, uint64_t id, int *status) {
  *status = 404;
  int64_t day = (int64_t)(id >> 20) / DAY_MS;
  cad__arch_db_t *db;
  if (cad__arch_db_open(dir, day, false, true, &db) < 0) return NULL;
  sqlite3_stmt *s;
  json_t *o = NULL;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT t, channel, peer, conn, size, status, reason, ack, dl_seq,"
                         " msh3, msh4, msh5, msh6, msh7, type, msh10, msh11, msh12"
                         " FROM msg WHERE id=?",
                         -1, &s, NULL) != SQLITE_OK) {
    *status = 503;
    cad__arch_db_close(db);
    return NULL;
  }
  sqlite3_bind_int64(s, 1, (sqlite3_int64)id);
  if (sqlite3_step(s) == SQLITE_ROW) {
    char t[40], ids[24];
    iso(sqlite3_column_int64(s, 0), t);
    snprintf(ids, sizeof ids, "%llu", (unsigned long long)id);
    o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", ids, "received", t,
                  "channel", col(s, 1), "peer", col(s, 2), "connection",
                  (json_int_t)sqlite3_column_int64(s, 3), "size",
                  (json_int_t)sqlite3_column_int64(s, 4), "status", col(s, 5), "reason", col(s, 6),
                  "ack", col(s, 7));
    json_t *h = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "MSH-3", col(s, 9),
                          "MSH-4", col(s, 10), "MSH-5", col(s, 11), "MSH-6", col(s, 12), "MSH-7",
                          col(s, 13), "MSH-9", col(s, 14), "MSH-10", col(s, 15), "MSH-11",
                          col(s, 16), "MSH-12", col(s, 17));
    if (o) {
      json_object_set_new(o, "header", h ? h : json_null());
      if (sqlite3_column_type(s, 8) != SQLITE_NULL)
        json_object_set_new(o, "dead_letter", json_integer(sqlite3_column_int64(s, 8)));
      json_object_set_new(o, "journey", journey(db, id));
    } else {
      json_decref(h);
    }
    *status = o ? 200 : 500;
  }
  sqlite3_finalize(s);
  cad__arch_db_close(db);
  return o;
}

static void take_body(void *ud, const char *p, size_t len) {
  body_out_t *b = ud;
  b->p = malloc(len + 1);
  if (!b->p) {
    b->nomem = true;
    return;
  }
  memcpy(b->p, p, len);
  b->p[len] = 0;
  b->len = len;
}

static int message_id(cad__admin_call_t *c, uint64_t *id) {
  if (cad__admin_u64(c->arg, id) < 0 || *id == 0) {
    cad__admin_error(c->res, 400, "bad_request", "expected a message id (a number)");
    return -1;
  }
  return 0;
}

/* ---- the message as a tree of paths ------------------------------------------ */

typedef struct tree {
  json_t *arr;
  cad_arena_t *a;
  size_t n;
} tree_t;

static void leaf(tree_t *t, const char *path, const cad_hl7_delims_t *d, cad_str_t raw) {
  if (!raw.len || t->n >= TREE_MAX) return;
  cad_str_t dec, txt;
  if (!cad_hl7_decode(d, raw, t->a, &dec) || !cad_hl7_text(dec, t->a, &txt)) return;
  json_t *v = json_stringn(txt.p, txt.len);
  if (!v) return;
  json_t *o = json_pack("{s:s, s:o}", "path", path, "value", v);
  if (o && json_array_append_new(t->arr, o) == 0) t->n++;
}

/* Every non-empty leaf of a field: repetitions, components, subcomponents. */
static void field_leaves(tree_t *t, const char *base, const cad_hl7_delims_t *d, cad_str_t f) {
  int nrep = d->rep ? cad_hl7_npieces(f, d->rep) : 1;
  for (int r = 1; r <= nrep && t->n < TREE_MAX; r++) {
    cad_str_t rv = f;
    if (nrep > 1) cad_hl7_piece(f, d->rep, r, &rv);
    char rp[96];
    if (nrep > 1) snprintf(rp, sizeof rp, "%s[%d]", base, r);
    else snprintf(rp, sizeof rp, "%s", base);
    int nc = cad_hl7_npieces(rv, d->comp);
    for (int k = 1; k <= nc && t->n < TREE_MAX; k++) {
      cad_str_t cv = rv;
      if (nc > 1) cad_hl7_piece(rv, d->comp, k, &cv);
      int ns = d->sub ? cad_hl7_npieces(cv, d->sub) : 1;
      for (int u = 1; u <= ns && t->n < TREE_MAX; u++) {
        cad_str_t sv = cv;
        if (ns > 1) cad_hl7_piece(cv, d->sub, u, &sv);
        char path[128];
        if (nc == 1 && ns == 1) snprintf(path, sizeof path, "%s", rp);
        else if (ns == 1) snprintf(path, sizeof path, "%s.%d", rp, k);
        else snprintf(path, sizeof path, "%s.%d.%d", rp, k, u);
        leaf(t, path, d, sv);
      }
    }
  }
}

/* The body as [{path, value}] (values decoded, as UTF-8), at most TREE_MAX. */
static json_t *tree_of(const char *p, size_t len) {
  cad_arena_t a;
  cad_arena_init(&a, 16384, 64 * (len + 1024));
  cad_hl7_msg_t m;
  json_t *arr = json_array();
  if (!arr || cad_hl7_parse(&m, p, len, &a, NULL, NULL) != 0) {
    cad_arena_free(&a);
    json_decref(arr);
    return json_null();
  }
  tree_t t = {arr, &a, 0};
  int occ[64] = {0};
  uint32_t ids[64];
  int nids = 0;
  for (uint32_t i = 0; i < m.nsegs && t.n < TREE_MAX; i++) {
    const cad_hl7_seg_t *s = cad_hl7_seg(&m, i);
    int k = 0;
    while (k < nids && ids[k] != s->id) k++;
    if (k == nids && nids < 64) ids[nids++] = s->id;
    int o = k < 64 ? ++occ[k] : 1;
    char seg[16];
    if (o > 1) snprintf(seg, sizeof seg, "%s[%d]", s->name, o);
    else snprintf(seg, sizeof seg, "%s", s->name);
    int nf = cad_hl7_nfields(s);
    for (int f = 1; f <= nf && t.n < TREE_MAX; f++) {
      cad_str_t v;
      if (!cad_hl7_field(s, f, &v)) continue;
      char base[32];
      snprintf(base, sizeof base, "%s-%d", seg, f);
      if (s->header && f <= 2) {
        /* MSH-1, MSH-2: the delimiters themselves, not split */
        json_t *x = json_pack("{s:s, s:s#}", "path", base, "value", v.p, (int)v.len);
        if (x && json_array_append_new(arr, x) == 0) t.n++;
        continue;
      }
      field_leaves(&t, base, &s->d, v);
    }
  }
  cad_arena_free(&a);
  return arr;
}

static void run_show(arch_work_t *x) {
  x->doc = message(x->dir, x->id, &x->status);
  if (!x->doc || !x->want_body) return;
  x->rc = cad_archive_show(x->dir, x->id, true, take_body, &x->b, x->err, sizeof x->err);
  if (x->rc == 0 && x->b.p) {
    /* As JSON text (UTF-8: a legacy body is read as Windows-1252, as
     * cad_hl7_text does), and as a tree of paths with decoded values. */
    cad_arena_t ta;
    cad_arena_init(&ta, 4096, 4 * (x->b.len + 64));
    cad_str_t txt;
    json_t *t = cad_hl7_text((cad_str_t){x->b.p, x->b.len}, &ta, &txt)
                    ? json_stringn(txt.p, txt.len)
                    : NULL;
    cad_arena_free(&ta);
    json_object_set_new(x->doc, "body", t ? t : json_null());
    json_object_set_new(x->doc, "tree", tree_of(x->b.p, x->b.len));
  }
}

static void done_show(arch_work_t *x) {
  cad__admin_job_t *j = x->j;
  if (!x->doc) {
    if (x->want_body)
      cad__admin_audit(j->a, j->token, j->peer, "message.body", j->target, "not_found");
    int st = x->status == 404 ? 404 : 503;
    return cad__admin_job_answer(
        j, st,
        json_pack("{s:s, s:s}", "error", st == 404 ? "not_found" : "unavailable", "detail",
                  st == 404 ? "no such message in the archive" : "the archive could not be read"));
  }
  if (x->want_body)
    cad__admin_audit(j->a, j->token, j->peer, "message.body", j->target,
                     x->rc == 0 && x->b.p ? "ok" : "unreadable");
  json_t *o = x->doc;
  x->doc = NULL;
  cad__admin_job_answer(j, 200, o);
}

void cad__admin_archive_show(cad__admin_call_t *c) {
  uint64_t id;
  if (message_id(c, &id) < 0) return;
  char v[8];
  int q = cad__admin_query(c->req, "body", v, sizeof v);
  bool want_body = q == 1 && strcmp(v, "1") == 0;
  if (q < 0 || (q == 1 && !want_body && strcmp(v, "0") != 0))
    return cad__admin_error(c->res, 400, "bad_request", "body: expected 0 or 1");
  if (want_body && (!c->tok || c->tok->role < CAD_ROLE_ANALYST)) {
    cad__admin_audit_call(c, "message.body", c->arg, "forbidden");
    return cad__admin_error(c->res, 403, "forbidden", "message bodies need the analyst role");
  }
  arch_work_t *x = calloc(1, sizeof *x);
  if (!x) return cad__admin_error(c->res, 500, "internal", "out of memory");
  if (!archive_dir(c->a, x->dir, sizeof x->dir)) {
    free(x);
    return cad__admin_error(c->res, 503, "unavailable", "no archive");
  }
  x->id = id;
  x->want_body = want_body;
  x->run = run_show;
  x->done = done_show;
  offload(c, x, want_body ? "message.body" : "message", c->arg);
}

/* ---- resend ---------------------------------------------------------------- */

static void resent(void *ud, int status, const uint64_t *seqs, size_t n) {
  cad__admin_job_t *j = ud;
  char result[64], target[CAD_ADMIN_ARG_MAX + 64];
  snprintf(target, sizeof target, "%s", j->audit_target ? j->audit_target : j->target);
  if (status < 0 || n != 1) {
    cad__admin_audit(j->a, j->token, j->peer, "message.resend", target, cad_err_name(status));
    return cad__admin_job_answer(j, 500,
                                 json_pack("{s:s, s:s}", "error", "failed", "detail",
                                           cad_strerror(status < 0 ? status : CAD_E_IO)));
  }
  snprintf(result, sizeof result, "ok: queue seq %llu", (unsigned long long)seqs[0]);
  cad__admin_audit(j->a, j->token, j->peer, "message.resend", target, result);
  char ids[24];
  snprintf(ids, sizeof ids, "%llu", (unsigned long long)j->n);
  cad__admin_job_answer(j, 200,
                        json_pack("{s:s, s:s, s:I}", "id", ids, "destination", j->target,
                                  "queue_seq", (json_int_t)seqs[0]));
}

/* Apply `set` ({"PATH": "text", ...}) to the body in b (replaced by the
 * edited bytes).  0, or -1 with *why (a PHI-free reason naming the path). */
static int apply_edits(json_t *set, body_out_t *b, char *why, size_t cap, size_t *nedits) {
  *nedits = 0;
  if (!set) return 0;
  if (!json_is_object(set) || json_object_size(set) > EDITS_MAX) {
    snprintf(why, cap, "set: expected an object of at most %d \"PATH\": \"text\"", EDITS_MAX);
    return -1;
  }
  cad_arena_t a;
  cad_arena_init(&a, 16384, 64 * (b->len + 4096));
  cad_hl7_msg_t m;
  int rc = cad_hl7_parse(&m, b->p, b->len, &a, NULL, NULL);
  if (rc < 0) {
    snprintf(why, cap, "the archived message does not parse: it cannot be edited");
    cad_arena_free(&a);
    return -1;
  }
  const char *key;
  json_t *val;
  json_object_foreach(set, key, val) {
    cad_hl7_path_t path;
    if (!json_is_string(val) || cad_hl7_path_parse(key, strlen(key), &path, NULL, NULL) != 0) {
      snprintf(why, cap, "set: '%.64s' is not a path with a text value", key);
      rc = -1;
      break;
    }
    int n = cad_hl7_set(&m, &path, json_string_value(val), json_string_length(val), 0);
    if (n < 0) {
      snprintf(why, cap, "set: %.64s: %s", key, cad_strerror(n));
      rc = -1;
      break;
    }
    (*nedits)++;
  }
  cad_buf_t out = CAD_BUF_INIT;
  if (rc == 0 && cad_hl7_serialize(&m, &out) < 0) {
    snprintf(why, cap, "out of memory");
    rc = -1;
  }
  cad_arena_free(&a);
  if (rc < 0) {
    cad_buf_free(&out);
    return -1;
  }
  free(b->p);
  b->p = out.data; /* handed over */
  b->len = out.len;
  return 0;
}

static int apply_edits(json_t *set, body_out_t *b, char *why, size_t cap, size_t *nedits);
static void resent(void *ud, int status, const uint64_t *seqs, size_t n);

static void run_resend(arch_work_t *x) {
  x->rc = cad_archive_show(x->dir, x->id, true, take_body, &x->b, x->err, sizeof x->err);
  if (x->rc == 0 && x->b.p && apply_edits(x->set, &x->b, x->why, sizeof x->why, &x->nedits) < 0)
    x->rc = 1; /* a bad edit: x->why says which */
}

static void done_resend(arch_work_t *x) {
  cad__admin_job_t *j = x->j;
  char target[CAD_ADMIN_ARG_MAX + 64 + EDITS_MAX * 34];
  snprintf(target, sizeof target, "message %llu -> %s", (unsigned long long)x->id, j->target);
  /* The audit names the paths edited, never the values. */
  if (x->rc == 0 && x->nedits) {
    size_t l = strlen(target);
    const char *key;
    json_t *val;
    snprintf(target + l, sizeof target - l, " edited");
    json_object_foreach(x->set, key, val) {
      l = strlen(target);
      snprintf(target + l, sizeof target - l, " %.32s", key);
    }
  }
  if (x->rc != 0 || !x->b.p) {
    bool edit = x->rc == 1;
    cad__admin_audit(j->a, j->token, j->peer, "message.resend", target,
                     edit                      ? "bad_edit"
                     : x->rc == CAD_E_NOTFOUND ? "not_found"
                                               : "unreadable");
    return cad__admin_job_answer(
        j, edit ? 400 : 404,
        json_pack("{s:s, s:s}", "error", edit ? "bad_request" : "not_found", "detail",
                  edit ? x->why : "no such message in the archive (or its body is unreadable)"));
  }
  cad_queue_t *q = *j->a->view.q;
  j->n = x->id;
  j->audit_target = strdup(target);
  cad_queue_item_t item = {x->qid, x->b.p, x->b.len};
  int rc = q ? cad_queue_append(q, &item, 1, resent, j) : CAD_E_STATE;
  if (rc < 0) resent(j, rc, NULL, 0); /* else resent answers once durable */
}

void cad__admin_archive_resend(cad__admin_call_t *c) {
  uint64_t id;
  if (message_id(c, &id) < 0) return;
  json_error_t err;
  json_t *doc = c->req->body && c->req->body_len
                    ? json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &err)
                    : NULL;
  const char *dest = NULL;
  json_t *set = NULL;
  char name[CAD_ADMIN_ARG_MAX];
  if (doc &&
      json_unpack_ex(doc, &err, JSON_STRICT, "{s:s, s?o}", "destination", &dest, "set", &set) ==
          0 &&
      strlen(dest) < sizeof name &&
      (!set || (json_is_object(set) && json_object_size(set) <= EDITS_MAX)))
    snprintf(name, sizeof name, "%s", dest);
  else dest = NULL;
  if (!dest) {
    json_decref(doc);
    return cad__admin_error(c->res, 400, "bad_request",
                            "expected a JSON body {\"destination\": NAME, \"set\": {PATH: text}}"
                            " (set optional, at most 32 paths)");
  }
  cad_queue_t *q = *c->a->view.q;
  int qid = q ? cad__admin_qid(c->a, name) : -1;
  if (qid < 0) {
    json_decref(doc);
    char target[CAD_ADMIN_ARG_MAX + 64];
    snprintf(target, sizeof target, "message %llu -> %s", (unsigned long long)id, name);
    cad__admin_audit_call(c, "message.resend", target, "not_found");
    return cad__admin_error(c->res, q ? 404 : 503, q ? "not_found" : "unavailable",
                            q ? "no destination of that name" : "the queue is closed");
  }
  arch_work_t *x = calloc(1, sizeof *x);
  if (!x) {
    json_decref(doc);
    return cad__admin_error(c->res, 500, "internal", "out of memory");
  }
  if (!archive_dir(c->a, x->dir, sizeof x->dir)) {
    json_decref(doc);
    free(x);
    return cad__admin_error(c->res, 503, "unavailable", "no archive");
  }
  x->id = id;
  x->qid = (uint16_t)qid;
  x->set = set ? json_incref(set) : NULL;
  json_decref(doc);
  x->run = run_resend;
  x->done = done_resend;
  offload(c, x, "message.resend", name);
}
