/* admin_archive.c - the archive through the admin API (admin_int.h):
 *   GET  /api/v1/messages?patient=&control_id=&type=&channel=&destination=
 *        &status=&sender=&receiver=&since=&until=&limit=   (cad_archive_search)
 *   GET  /api/v1/messages/ID            the record, ACK and journey; with
 *        ?body=1 the message too (role analyst; every body view is audited)
 *   POST /api/v1/messages/ID/resend     {"destination": NAME}: the archived
 *        body appended to that destination's queue as a new message
 * The archive is read with SQLite on the loop thread: a search is bounded
 * by its limit (at most 500 rows) and the day files it spans.
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
#define TREE_MAX 5000 /* leaves shown of one message */

/* since / until: "2h" (s, m, h, d ago), milliseconds since the epoch, or
 * YYYY-MM-DD[THH:MM[:SS]][Z] in UTC.  -1 when malformed. */
static int64_t parse_when(const char *s, int64_t now) {
  size_t n = strlen(s);
  if (n >= 2 && strchr("smhd", s[n - 1])) {
    static const int64_t unit[] = {1000, 60000, 3600000, 86400000};
    uint64_t v;
    char num[24];
    if (n - 1 >= sizeof num) return -1;
    memcpy(num, s, n - 1);
    num[n - 1] = 0;
    if (cad__admin_u64(num, &v) < 0 || v > 100000000) return -1;
    int64_t back = (int64_t)v * unit[strchr("smhd", s[n - 1]) - "smhd"];
    return back > now ? 0 : now - back;
  }
  uint64_t ms;
  if (cad__admin_u64(s, &ms) == 0) return ms > (uint64_t)INT64_MAX / 2 ? -1 : (int64_t)ms;
  int y, mo, d, h = 0, mi = 0, sec = 0, k = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &k) != 3) return -1;
  const char *t = s + k;
  if (*t == 'T') {
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
  if (*t || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      sec > 60 || h < 0 || mi < 0 || sec < 0)
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

void cad__admin_archive_search(cad__admin_call_t *c) {
  static const char *const keys[] = {"patient",     "control_id", "type",   "channel",
                                     "destination", "status",     "sender", "receiver",
                                     "since",       "until",      "limit"};
  enum { NKEYS = sizeof keys / sizeof keys[0] };
  char v[NKEYS][PARAM_MAX];
  bool have[NKEYS];
  for (size_t i = 0; i < NKEYS; i++) {
    int q = cad__admin_query(c->req, keys[i], v[i], PARAM_MAX);
    if (q < 0) {
      char d[96];
      snprintf(d, sizeof d, "%s: malformed or longer than %d bytes", keys[i], PARAM_MAX - 1);
      return cad__admin_error(c->res, 400, "bad_request", d);
    }
    have[i] = q == 1 && v[i][0];
  }
  cad_archive_query_t q = {0};
  const char **slots[] = {&q.patient, &q.control_id, &q.type,   &q.channel,
                          &q.dest,    &q.status,     &q.sender, &q.receiver};
  for (size_t i = 0; i < 8; i++)
    if (have[i]) *slots[i] = v[i];
  if (q.status && !known_status(q.status))
    return cad__admin_error(c->res, 400, "bad_request", "status: not a known status");
  int64_t now = (int64_t)cad_now_ms();
  if (have[8] && (q.since_ms = parse_when(v[8], now)) < 0)
    return cad__admin_error(c->res, 400, "bad_request", "since: expected 2h, 7d, ms or a date");
  if (have[9] && (q.until_ms = parse_when(v[9], now)) < 0)
    return cad__admin_error(c->res, 400, "bad_request", "until: expected 2h, 7d, ms or a date");
  uint64_t limit = 50;
  if (have[10] && (cad__admin_u64(v[10], &limit) < 0 || limit == 0))
    return cad__admin_error(c->res, 400, "bad_request", "limit: expected a positive number");
  q.limit = limit > SEARCH_MAX ? SEARCH_MAX : limit;
  char dir[4200];
  if (!archive_dir(c->a, dir, sizeof dir))
    return cad__admin_error(c->res, 503, "unavailable", "no archive");
  json_t *arr = json_array();
  if (!arr) return cad__admin_error(c->res, 500, "internal", "out of memory");
  char err[512] = "";
  int n = cad_archive_search(dir, &q, add_row, arr, err, sizeof err);
  if (n < 0 && n != CAD_E_NOTFOUND && json_array_size(arr) == 0) {
    json_decref(arr);
    CAD_LOG(CAD_LOG_WARN, "admin.search_failed", NULL, "%s", err);
    return cad__admin_error(c->res, 503, "unavailable", "the archive could not be read");
  }
  cad__admin_json(c->res, 200, json_pack("{s:o}", "messages", arr));
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

typedef struct body_out {
  char *p;
  size_t len;
  bool nomem;
} body_out_t;

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
  char dir[4200];
  if (!archive_dir(c->a, dir, sizeof dir))
    return cad__admin_error(c->res, 503, "unavailable", "no archive");
  int status;
  json_t *o = message(dir, id, &status);
  if (!o) {
    if (want_body) cad__admin_audit_call(c, "message.body", c->arg, "not_found");
    return cad__admin_error(
        c->res, status, status == 404 ? "not_found" : "unavailable",
        status == 404 ? "no such message in the archive" : "the archive could not be read");
  }
  if (want_body) {
    body_out_t b = {0};
    char err[256];
    int rc = cad_archive_show(dir, id, true, take_body, &b, err, sizeof err);
    cad__admin_audit_call(c, "message.body", c->arg, rc == 0 && b.p ? "ok" : "unreadable");
    if (rc == 0 && b.p) {
      /* As JSON text (UTF-8: a legacy body is read as Windows-1252, as
       * cad_hl7_text does), and as a tree of paths with decoded values. */
      cad_arena_t ta;
      cad_arena_init(&ta, 4096, 4 * (b.len + 64));
      cad_str_t txt;
      json_t *t =
          cad_hl7_text((cad_str_t){b.p, b.len}, &ta, &txt) ? json_stringn(txt.p, txt.len) : NULL;
      cad_arena_free(&ta);
      json_object_set_new(o, "body", t ? t : json_null());
      json_object_set_new(o, "tree", tree_of(b.p, b.len));
    }
    free(b.p);
  }
  cad__admin_json(c->res, 200, o);
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

#define EDITS_MAX 32

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
      strlen(dest) < sizeof name)
    snprintf(name, sizeof name, "%s", dest);
  else dest = NULL;
  if (!dest) {
    json_decref(doc);
    return cad__admin_error(c->res, 400, "bad_request",
                            "expected a JSON body {\"destination\": NAME, \"set\": {PATH: text}}"
                            " (set optional)");
  }
  char target[CAD_ADMIN_ARG_MAX + 64];
  snprintf(target, sizeof target, "message %llu -> %s", (unsigned long long)id, name);
  cad_queue_t *q = *c->a->view.q;
  int qid = q ? cad__admin_qid(c->a, name) : -1;
  if (qid < 0) {
    json_decref(doc);
    cad__admin_audit_call(c, "message.resend", target, "not_found");
    return cad__admin_error(c->res, q ? 404 : 503, q ? "not_found" : "unavailable",
                            q ? "no destination of that name" : "the queue is closed");
  }
  char dir[4200];
  if (!archive_dir(c->a, dir, sizeof dir)) {
    json_decref(doc);
    return cad__admin_error(c->res, 503, "unavailable", "no archive");
  }
  body_out_t b = {0};
  char e[256];
  int rc = cad_archive_show(dir, id, true, take_body, &b, e, sizeof e);
  if (rc < 0 || !b.p) {
    free(b.p);
    json_decref(doc);
    cad__admin_audit_call(c, "message.resend", target,
                          rc == CAD_E_NOTFOUND ? "not_found" : "unreadable");
    return cad__admin_error(c->res, rc == CAD_E_NOTFOUND || rc == CAD_E_IO ? 404 : 500, "not_found",
                            "no such message in the archive (or its body is unreadable)");
  }
  char why[160];
  size_t nedits = 0;
  rc = apply_edits(set, &b, why, sizeof why, &nedits);
  /* The audit names the paths edited, never the values. */
  if (rc == 0 && nedits) {
    size_t l = strlen(target);
    const char *key;
    json_t *val;
    snprintf(target + l, sizeof target - l, " edited");
    json_object_foreach(set, key, val) {
      l = strlen(target);
      snprintf(target + l, sizeof target - l, " %.32s", key);
    }
  }
  json_decref(doc);
  if (rc < 0) {
    free(b.p);
    cad__admin_audit_call(c, "message.resend", target, "bad_edit");
    return cad__admin_error(c->res, 400, "bad_request", why);
  }
  cad__admin_job_t *j = cad__admin_job_new(c, "message.resend", name);
  if (!j) {
    free(b.p);
    return;
  }
  j->n = id;
  j->qid = (uint16_t)qid;
  snprintf(j->action, sizeof j->action, "message.resend");
  j->audit_target = strdup(target); /* the audit target, with the paths edited */
  cad_queue_item_t item = {(uint16_t)qid, b.p, b.len};
  rc = cad_queue_append(q, &item, 1, resent, j);
  free(b.p); /* copied by the queue */
  if (rc < 0) resent(j, rc, NULL, 0);
}
