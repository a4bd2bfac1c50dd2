/* pg_dest.c - a PostgreSQL destination on libpq's asynchronous API
 * (pg_dest.h). */
#include "pg_dest.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "hl7.h"

#define STMT "cad_stmt"
#define MAX_BATCH 1024

typedef enum {
  ST_DOWN = 0,   /* no connection */
  ST_CONNECTING, /* PQconnectPoll in progress */
  ST_PREPARING,  /* client_encoding and the statement sent, waiting for the sync */
  ST_IDLE,       /* ready, no batch running */
  ST_BATCH,      /* a batch's pipeline is running */
} state_t;

typedef struct item {
  const char *p;
  size_t len;
  cad_pg_done_cb cb;
  void *ud;
} item_t;

struct cad_pg_dest {
  uv_loop_t *loop;
  const cad_pg_dest_conf_t *conf;
  PGconn *conn;
  uv_poll_t *poll; /* malloc'd; freed in its close callback */
  int poll_fd, poll_events;
  uv_timer_t *timer; /* starts a batch on the next turn of the loop; malloc'd */
  state_t st;
  bool closing;
  /* Deliveries in order: [0, nrun) belong to the running batch. */
  item_t items[MAX_BATCH];
  size_t n, nrun;
  size_t cap_next; /* the next batch takes at most this many (0 = conf->batch) */
  /* The running pipeline: owner[i] is the item of query i (SIZE_MAX: none). */
  size_t *owner;
  size_t nq, owner_cap, qdone;
  bool cur_seen;   /* a result of query qdone has been read */
  size_t err_item; /* first item whose query failed; SIZE_MAX = none */
  int err_outcome;
  bool err_committed_before; /* the items before err_item were committed */
  char err_detail[200];
  cad_arena_t arena; /* the batch's parameter values */
};

/* ---- parameters ------------------------------------------------------- */

static const char *value_of(const cad_hl7_msg_t *m, const cad_hl7_path_t *p, cad_arena_t *a,
                            bool *nomem) {
  cad_hl7_match_t mt;
  if (!cad_hl7_get(m, p, &mt)) return NULL;
  cad_hl7_kind_t k = cad_hl7_kind(&mt);
  if (k != CAD_HL7_VALUE) return NULL; /* absent, empty or "" */
  cad_str_t v;
  if (!cad_hl7_value(p, &mt, a, &v)) {
    *nomem = true;
    return NULL;
  }
  char *s = cad_arena_alloc(a, v.len + 1);
  if (!s) {
    *nomem = true;
    return NULL;
  }
  memcpy(s, v.p, v.len);
  s[v.len] = 0;
  return s;
}

int cad_pg_rows(const cad_pg_dest_conf_t *conf, const char *p, size_t len, cad_arena_t *a,
                void (*row)(void *ud, const char *const *values, size_t n), void *ud) {
  cad_hl7_path_t paths[CAD_PG_MAX_PARAMS];
  const char *vals[CAD_PG_MAX_PARAMS];
  size_t np = conf->nparams < CAD_PG_MAX_PARAMS ? conf->nparams : CAD_PG_MAX_PARAMS;
  for (size_t i = 0; i < np; i++)
    if (cad_hl7_path_parse(conf->params[i], strlen(conf->params[i]), &paths[i], NULL, NULL) != 0)
      return CAD_E_PATH;
  cad_hl7_msg_t m;
  int rc = cad_hl7_parse(&m, p, len, a, NULL, NULL);
  if (rc < 0) return rc;
  bool nomem = false;
  if (!conf->rows) {
    for (size_t i = 0; i < np; i++) vals[i] = value_of(&m, &paths[i], a, &nomem);
    if (nomem) return CAD_E_NOMEM;
    row(ud, vals, np);
    return 1;
  }
  uint32_t segid = cad_hl7_segid(conf->rows);
  int count = 0;
  for (uint32_t s = 0; s < m.nsegs; s++) {
    if (cad_hl7_seg(&m, s)->id != segid) continue;
    count++;
    for (size_t i = 0; i < np; i++) {
      cad_hl7_path_t pp = paths[i];
      if (pp.segid == segid && pp.occ == CAD_HL7_ALL) pp.occ = count;
      vals[i] = value_of(&m, &pp, a, &nomem);
    }
    if (nomem) return CAD_E_NOMEM;
    row(ud, vals, np);
  }
  return count;
}

/* ---- the connection --------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *t);
static void start_batch(cad_pg_dest_t *d);

static void poll_closed(uv_handle_t *h) { free(h); }

static void poll_drop(cad_pg_dest_t *d) {
  if (!d->poll) return;
  uv_close((uv_handle_t *)d->poll, poll_closed);
  d->poll = NULL;
  d->poll_fd = -1;
}

/* Watch the connection's socket for `events` (it may change while
 * connecting: a new handle then). */
static int poll_want(cad_pg_dest_t *d, int events) {
  int fd = PQsocket(d->conn);
  if (fd < 0) return CAD_E_IO;
  if (d->poll && d->poll_fd != fd) poll_drop(d);
  if (!d->poll) {
    d->poll = malloc(sizeof *d->poll);
    if (!d->poll) return CAD_E_NOMEM;
    int rc = uv_poll_init(d->loop, d->poll, fd);
    if (rc < 0) {
      free(d->poll);
      d->poll = NULL;
      return rc;
    }
    d->poll->data = d;
    d->poll_fd = fd;
    d->poll_events = 0;
  }
  if (events != d->poll_events) {
    d->poll_events = events;
    return uv_poll_start(d->poll, events, on_poll);
  }
  return 0;
}

/* Answer the first cnt items with outcome, in order, and drop them (they
 * are copied out first: a callback may hand over the next delivery). */
static void answer(cad_pg_dest_t *d, size_t cnt, int outcome, const char *detail) {
  item_t done[MAX_BATCH];
  memcpy(done, d->items, cnt * sizeof *done);
  memmove(d->items, d->items + cnt, (d->n - cnt) * sizeof *d->items);
  d->n -= cnt;
  d->nrun = d->nrun > cnt ? d->nrun - cnt : 0;
  for (size_t i = 0; i < cnt; i++) done[i].cb(done[i].ud, outcome, outcome ? detail : NULL);
}

static void drop_conn(cad_pg_dest_t *d) {
  poll_drop(d);
  if (d->conn) PQfinish(d->conn);
  d->conn = NULL;
  d->st = ST_DOWN;
}

static void fail_all(cad_pg_dest_t *d, const char *detail) {
  uv_timer_stop(d->timer);
  drop_conn(d);
  answer(d, d->n, CAD_PG_RETRY, detail);
}

static void kick(cad_pg_dest_t *d);

static void connect_step(cad_pg_dest_t *d) {
  PostgresPollingStatusType ps = PQconnectPoll(d->conn);
  if (ps == PGRES_POLLING_FAILED) {
    fail_all(d, "connection failed");
    return;
  }
  if (ps == PGRES_POLLING_READING || ps == PGRES_POLLING_WRITING) {
    if (poll_want(d, ps == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE) < 0)
      fail_all(d, "connection failed");
    return;
  }
  /* Connected: the encoding, then the statement, in one pipeline. */
  if (PQsetnonblocking(d->conn, 1) != 0 || PQenterPipelineMode(d->conn) != 1 ||
      PQsendQueryParams(d->conn, "SET client_encoding TO 'UTF8'", 0, NULL, NULL, NULL, NULL, 0) !=
          1 ||
      PQsendPrepare(d->conn, STMT, d->conf->sql, 0, NULL) != 1 || PQpipelineSync(d->conn) != 1) {
    fail_all(d, "connection lost");
    return;
  }
  d->st = ST_PREPARING;
  d->nq = 2;
  d->qdone = 0;
  d->cur_seen = false;
  d->err_item = SIZE_MAX;
  d->err_detail[0] = 0;
  int fl = PQflush(d->conn);
  if (fl < 0 || poll_want(d, UV_READABLE | (fl == 1 ? UV_WRITABLE : 0)) < 0)
    fail_all(d, "connection lost");
}

static void start_connect(cad_pg_dest_t *d) {
  const char *ci = "";
  if (d->conf->conninfo_env) {
    ci = getenv(d->conf->conninfo_env);
    if (!ci) {
      answer(d, d->n, CAD_PG_RETRY, "conninfo_env variable not set");
      return;
    }
  }
  d->conn = PQconnectStart(ci);
  if (!d->conn || PQstatus(d->conn) == CONNECTION_BAD) {
    fail_all(d, "connection failed");
    return;
  }
  d->st = ST_CONNECTING;
  uv_timer_start(d->timer, on_timer, d->conf->timeout_ms ? d->conf->timeout_ms : 60000, 0);
  connect_step(d);
}

/* ---- results ------------------------------------------------------------ */

static bool class_is(const char *state, const char *cls) {
  return state && strncmp(state, cls, 2) == 0;
}

/* The first error of the pipeline: which item, what outcome, a PHI-free
 * detail (SQLSTATE, constraint, and for class 23 the primary message). */
static void note_error(cad_pg_dest_t *d, const PGresult *r) {
  if (d->err_item != SIZE_MAX || d->err_detail[0]) return;
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
  const char *prim = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  size_t owner = d->qdone < d->nq && d->owner && d->st == ST_BATCH ? d->owner[d->qdone] : SIZE_MAX;
  bool data = class_is(state, "23") || class_is(state, "22");
  if (class_is(state, "23"))
    snprintf(d->err_detail, sizeof d->err_detail, "SQLSTATE %s%s%s: %s", state,
             cons ? " constraint " : "", cons ? cons : "", prim ? prim : "");
  else
    snprintf(d->err_detail, sizeof d->err_detail, "SQLSTATE %s%s%s", state ? state : "?????",
             cons ? " constraint " : "", cons ? cons : "");
  d->err_outcome = data && owner != SIZE_MAX ? CAD_PG_FAIL : CAD_PG_RETRY;
  d->err_item = owner;
  d->err_committed_before = false;
}

static void pipeline_done(cad_pg_dest_t *d) {
  uv_timer_stop(d->timer);
  if (d->st == ST_PREPARING) {
    if (d->err_detail[0]) {
      /* The statement was refused (a syntax error, a missing table): no
       * message can go; they wait, retried, until it is fixed. */
      char why[230];
      snprintf(why, sizeof why, "prepare failed: %s", d->err_detail);
      fail_all(d, why);
      return;
    }
    d->st = ST_IDLE;
    kick(d);
    return;
  }
  d->st = ST_IDLE;
  size_t nrun = d->nrun;
  if (!d->err_detail[0]) {
    d->cap_next = 0;
    answer(d, nrun, CAD_PG_OK, NULL);
  } else if (d->err_outcome == CAD_PG_FAIL && d->err_item > 0 && !d->err_committed_before) {
    /* Rolled back: the ones before the failed one go again on their own,
     * then the failed one alone, to be sure it is the one. */
    d->cap_next = d->err_item;
  } else if (d->err_outcome == CAD_PG_FAIL) {
    size_t k = d->err_item;
    char detail[sizeof d->err_detail];
    memcpy(detail, d->err_detail, sizeof detail);
    d->cap_next = 0;
    if (k > 0) answer(d, k, CAD_PG_OK, NULL); /* committed before it */
    answer(d, 1, CAD_PG_FAIL, detail);
    /* The worker retries what follows a failed message. */
    answer(d, d->n, CAD_PG_RETRY, "after a failed message");
  } else {
    char detail[sizeof d->err_detail];
    memcpy(detail, d->err_detail, sizeof detail);
    d->cap_next = 0;
    fail_all(d, detail);
    return;
  }
  kick(d);
}

static void read_results(cad_pg_dest_t *d) {
  for (;;) {
    if (!d->conn || PQisBusy(d->conn)) return;
    PGresult *r = PQgetResult(d->conn);
    if (!r) {
      if (!d->cur_seen) return; /* nothing more yet */
      d->qdone++;
      d->cur_seen = false;
      continue;
    }
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      pipeline_done(d);
      return;
    }
    d->cur_seen = true;
    if (s == PGRES_FATAL_ERROR) note_error(d, r);
    PQclear(r);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  cad_pg_dest_t *d = h->data;
  if (status < 0) {
    fail_all(d, uv_err_name(status));
    return;
  }
  if (d->st == ST_CONNECTING) {
    connect_step(d);
    return;
  }
  if (events & UV_READABLE) {
    if (PQconsumeInput(d->conn) != 1) {
      fail_all(d, "connection lost");
      return;
    }
    read_results(d);
    if (!d->conn || d->st == ST_DOWN) return;
  }
  if (d->st == ST_DOWN || !d->conn) return;
  int fl = PQflush(d->conn);
  if (fl < 0) {
    fail_all(d, "connection lost");
    return;
  }
  if (poll_want(d, UV_READABLE | (fl == 1 ? UV_WRITABLE : 0)) < 0) fail_all(d, "connection lost");
}

/* ---- batches ----------------------------------------------------------- */

typedef struct send_ctx {
  cad_pg_dest_t *d;
  size_t item;
  bool failed;
} send_ctx_t;

static void send_row(void *ud, const char *const *values, size_t n) {
  send_ctx_t *c = ud;
  cad_pg_dest_t *d = c->d;
  if (c->failed) return;
  if (d->nq == d->owner_cap) {
    size_t nc = d->owner_cap ? d->owner_cap * 2 : 256;
    size_t *no = realloc(d->owner, nc * sizeof *no);
    if (!no) {
      c->failed = true;
      return;
    }
    d->owner = no;
    d->owner_cap = nc;
  }
  if (PQsendQueryPrepared(d->conn, STMT, (int)n, values, NULL, NULL, 0) != 1) {
    c->failed = true;
    return;
  }
  d->owner[d->nq++] = c->item;
}

static void start_batch(cad_pg_dest_t *d) {
  size_t cap = d->cap_next ? d->cap_next : d->conf->batch ? d->conf->batch : 64;
  d->nrun = d->n < cap ? d->n : cap;
  d->nq = 0;
  d->qdone = 0;
  d->cur_seen = false;
  d->err_item = SIZE_MAX;
  d->err_detail[0] = 0;
  cad_arena_reset(&d->arena);
  for (size_t i = 0; i < d->nrun; i++) {
    send_ctx_t c = {d, i, false};
    int rc = cad_pg_rows(d->conf, d->items[i].p, d->items[i].len, &d->arena, send_row, &c);
    if (c.failed) {
      fail_all(d, "connection lost");
      return;
    }
    if (rc < 0) {
      /* It was accepted once, so this is rare: give it up alone; the ones
       * before it are sent and commit with the sync. */
      snprintf(d->err_detail, sizeof d->err_detail, "message does not parse (%s)",
               cad_err_name(rc));
      d->err_item = i;
      d->err_outcome = rc == CAD_E_NOMEM ? CAD_PG_RETRY : CAD_PG_FAIL;
      d->err_committed_before = true;
      d->nrun = i + 1;
      break;
    }
  }
  if (PQpipelineSync(d->conn) != 1) {
    fail_all(d, "connection lost");
    return;
  }
  d->st = ST_BATCH;
  uv_timer_start(d->timer, on_timer, d->conf->timeout_ms ? d->conf->timeout_ms : 60000, 0);
  int fl = PQflush(d->conn);
  if (fl < 0 || poll_want(d, UV_READABLE | (fl == 1 ? UV_WRITABLE : 0)) < 0)
    fail_all(d, "connection lost");
}

static void on_timer(uv_timer_t *t) {
  cad_pg_dest_t *d = t->data;
  if (d->closing) return;
  if (d->st == ST_CONNECTING || d->st == ST_PREPARING || d->st == ST_BATCH) {
    /* Not through in time (a server that stopped answering): the
     * connection is dropped, the messages retried. */
    fail_all(d, "timeout");
    return;
  }
  if (d->n == 0) return;
  if (d->st == ST_DOWN) start_connect(d);
  else if (d->st == ST_IDLE) start_batch(d);
}

/* Start what can start on the next turn of the loop (so that the
 * deliveries handed over together share a batch). */
static void kick(cad_pg_dest_t *d) {
  if (d->closing || d->n == 0) return;
  if (d->st != ST_DOWN && d->st != ST_IDLE) return;
  uv_timer_start(d->timer, on_timer, 0, 0);
}

int cad_pg_dest_deliver(cad_pg_dest_t *d, const char *p, size_t len, cad_pg_done_cb cb, void *ud) {
  if (d->closing) return CAD_E_STATE;
  if (d->n == MAX_BATCH) return CAD_E_FULL;
  d->items[d->n++] = (item_t){p, len, cb, ud};
  kick(d);
  return 0;
}

int cad_pg_dest_open(uv_loop_t *loop, const cad_pg_dest_conf_t *conf, cad_pg_dest_t **out,
                     char *err, size_t cap) {
  cad_pg_dest_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->loop = loop;
  d->conf = conf;
  d->poll_fd = -1;
  d->timer = malloc(sizeof *d->timer);
  if (!d->timer) {
    free(d);
    return CAD_E_NOMEM;
  }
  uv_timer_init(loop, d->timer);
  d->timer->data = d;
  cad_arena_init(&d->arena, 16384, 0);
  if (conf->conninfo_env && !getenv(conf->conninfo_env))
    snprintf(err, cap, "environment variable %s (conninfo_env) is not set: deliveries wait",
             conf->conninfo_env);
  *out = d;
  return 0;
}

static void timer_closed(uv_handle_t *h) { free(h); }

void cad_pg_dest_close(cad_pg_dest_t *d) {
  if (!d) return;
  d->closing = true;
  drop_conn(d);
  answer(d, d->n, CAD_PG_RETRY, "closing");
  uv_close((uv_handle_t *)d->timer, timer_closed);
  cad_arena_free(&d->arena);
  free(d->owner);
  free(d);
}
