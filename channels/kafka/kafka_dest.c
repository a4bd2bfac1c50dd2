/* kafka_dest.c - a Kafka destination on librdkafka (kafka_dest.h). */
#include "kafka_dest.h"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cad_error.h"
#include "cad_mem.h"
#include "hl7.h"

typedef struct slot {
  cad_kafka_done_cb cb;
  void *ud;
  bool done;
  int outcome;
  char detail[64];
} slot_t;

struct cad_kafka_dest {
  uv_loop_t *loop;
  const cad_kafka_dest_conf_t *conf;
  rd_kafka_t *rk;
  rd_kafka_queue_t *mainq;
  int pipefd[2];
  uv_poll_t poll;
  uv_timer_t timer;
  int open_handles; /* freed when both are closed */
  bool closing;
  bool fatal;   /* the producer hit a fatal error: remade when idle */
  bool failed;  /* a message of the current window failed */
  bool refused; /* one was refused before it left: take no more until answered */
  /* Messages in flight, answered in order: ids [head, tail). */
  slot_t slots[CAD_KAFKA_WINDOW];
  uint64_t head, tail;
  cad_arena_t arena;
  char err[160]; /* kept for open */
};

static bool topic_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

int cad_kafka_topic_render(const char *tmpl, const struct cad_hl7_msg *m, struct cad_arena *a,
                           char *out, size_t cap) {
  size_t n = 0;
  for (const char *s = tmpl; *s;) {
    if (s[0] == '$' && s[1] == '{') {
      const char *e = strchr(s, '}');
      if (!e) return CAD_E_PATH;
      cad_hl7_path_t p;
      if (cad_hl7_path_parse(s + 2, (size_t)(e - s - 2), &p, NULL, NULL) != 0) return CAD_E_PATH;
      cad_hl7_match_t mt;
      cad_str_t v = {NULL, 0};
      if (m && cad_hl7_get(m, &p, &mt) && !cad_hl7_value(&p, &mt, a, &v)) return CAD_E_NOMEM;
      for (size_t i = 0; i < v.len; i++) {
        if (n + 1 >= cap) return CAD_E_TOOBIG;
        out[n++] = topic_char(v.p[i]) ? v.p[i] : '_';
      }
      s = e + 1;
      continue;
    }
    if (n + 1 >= cap) return CAD_E_TOOBIG;
    out[n++] = *s++;
  }
  out[n] = 0;
  if (n == 0) return CAD_E_EMPTY;
  return (int)n;
}

/* Answer the finished slots at the head, in order. */
static void answer_head(cad_kafka_dest_t *d) {
  while (d->head < d->tail) {
    slot_t *s = &d->slots[d->head % CAD_KAFKA_WINDOW];
    if (!s->done) return;
    slot_t copy = *s;
    d->head++;
    if (copy.outcome != CAD_KAFKA_OK) {
      d->failed = true;
    } else if (d->failed) {
      copy.outcome = CAD_KAFKA_RETRY;
      snprintf(copy.detail, sizeof copy.detail, "after a failed message");
    }
    if (d->head == d->tail) d->failed = d->refused = false;
    copy.cb(copy.ud, copy.outcome, copy.outcome ? copy.detail : NULL);
  }
}

static bool permanent(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_MSG ||
         e == RD_KAFKA_RESP_ERR_INVALID_RECORD || e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  cad_kafka_dest_t *d = opaque;
  uint64_t id = (uint64_t)(uintptr_t)m->_private;
  if (id < d->head || id >= d->tail) return; /* answered already (closing) */
  slot_t *s = &d->slots[id % CAD_KAFKA_WINDOW];
  s->done = true;
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    s->outcome = CAD_KAFKA_OK;
  } else {
    s->outcome = permanent(m->err) ? CAD_KAFKA_FAIL : CAD_KAFKA_RETRY;
    snprintf(s->detail, sizeof s->detail, "%s", rd_kafka_err2name(m->err));
  }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  (void)err;
  (void)reason;
  cad_kafka_dest_t *d = opaque;
  char buf[16];
  if (rd_kafka_fatal_error(d->rk, buf, sizeof buf) != RD_KAFKA_RESP_ERR_NO_ERROR) d->fatal = true;
}

static void serve(cad_kafka_dest_t *d) {
  if (!d->rk) return;
  rd_kafka_poll(d->rk, 0);
  answer_head(d);
}

static void on_pipe(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  cad_kafka_dest_t *d = h->data;
  char buf[256];
  while (read(d->pipefd[0], buf, sizeof buf) > 0) {
  }
  serve(d);
}

static void on_tick(uv_timer_t *t) { serve(t->data); }

static int make_producer(cad_kafka_dest_t *d, char *err, size_t cap) {
  const cad_kafka_dest_conf_t *c = d->conf;
  rd_kafka_conf_t *kc = rd_kafka_conf_new();
  char e[256];
  /* The engine's defaults first, the configuration's properties over them,
   * the ones delivery relies on last. */
  const char *set[][2] = {
      {"partitioner", "murmur2_random"},
      {"message.timeout.ms", "30000"},
      {"linger.ms", "1"},
  };
  for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
    rd_kafka_conf_set(kc, set[i][0], set[i][1], e, sizeof e);
  for (size_t i = 0; i < c->nprops; i++) {
    if (rd_kafka_conf_set(kc, c->props[i].name, c->props[i].value, e, sizeof e) !=
        RD_KAFKA_CONF_OK) {
      snprintf(err, cap, "librdkafka property '%s': %s", c->props[i].name, e);
      rd_kafka_conf_destroy(kc);
      return CAD_E_CONFIG;
    }
  }
  const char *must[][2] = {
      {"bootstrap.servers", c->brokers},
      {"enable.idempotence", "true"},
      {"acks", "all"},
  };
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
    if (rd_kafka_conf_set(kc, must[i][0], must[i][1], e, sizeof e) != RD_KAFKA_CONF_OK) {
      snprintf(err, cap, "%s: %s", must[i][0], e);
      rd_kafka_conf_destroy(kc);
      return CAD_E_CONFIG;
    }
  }
  rd_kafka_conf_set_opaque(kc, d);
  rd_kafka_conf_set_dr_msg_cb(kc, on_dr);
  rd_kafka_conf_set_error_cb(kc, on_error);
  d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof e);
  if (!d->rk) {
    snprintf(err, cap, "producer: %s", e);
    rd_kafka_conf_destroy(kc);
    return CAD_E_CONFIG;
  }
  d->mainq = rd_kafka_queue_get_main(d->rk);
  rd_kafka_queue_io_event_enable(d->mainq, d->pipefd[1], "1", 1);
  d->fatal = false;
  return 0;
}

static void drop_producer(cad_kafka_dest_t *d) {
  if (!d->rk) return;
  rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(d->rk, 0); /* purged messages report here */
  rd_kafka_queue_io_event_enable(d->mainq, -1, NULL, 0);
  rd_kafka_queue_destroy(d->mainq);
  d->mainq = NULL;
  rd_kafka_destroy(d->rk);
  d->rk = NULL;
}

int cad_kafka_dest_open(uv_loop_t *loop, const cad_kafka_dest_conf_t *conf, cad_kafka_dest_t **out,
                        char *err, size_t cap) {
  cad_kafka_dest_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->loop = loop;
  d->conf = conf;
  if (pipe2(d->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    free(d);
    return CAD_E_IO;
  }
  int rc = make_producer(d, err, cap);
  if (rc < 0) {
    close(d->pipefd[0]);
    close(d->pipefd[1]);
    free(d);
    return rc;
  }
  cad_arena_init(&d->arena, 16384, 0);
  uv_poll_init(loop, &d->poll, d->pipefd[0]);
  d->poll.data = d;
  uv_poll_start(&d->poll, UV_READABLE, on_pipe);
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  uv_timer_start(&d->timer, on_tick, 100, 100);
  d->open_handles = 2;
  *out = d;
  return 0;
}

int cad_kafka_dest_deliver(cad_kafka_dest_t *d, const char *p, size_t len, cad_kafka_done_cb cb,
                           void *ud) {
  if (d->closing) return CAD_E_STATE;
  if (d->tail - d->head >= CAD_KAFKA_WINDOW) return CAD_E_FULL;
  /* After a refused message the ones behind it wait for its answer (the
   * worker hands them over again), so they are not sent twice. */
  if (d->refused) return CAD_E_STATE;
  if (d->fatal) {
    if (d->head != d->tail) return CAD_E_STATE; /* the rest report first */
    drop_producer(d);
    char e[160];
    int rc = make_producer(d, e, sizeof e);
    if (rc < 0) return rc;
  }
  cad_arena_reset(&d->arena);
  cad_hl7_msg_t m;
  bool parsed = cad_hl7_parse(&m, p, len, &d->arena, NULL, NULL) == 0;
  char topic[256];
  int tl =
      cad_kafka_topic_render(d->conf->topic, parsed ? &m : NULL, &d->arena, topic, sizeof topic);
  uint64_t id = d->tail;
  slot_t *s = &d->slots[id % CAD_KAFKA_WINDOW];
  *s = (slot_t){cb, ud, false, 0, ""};
  if (tl < 0) {
    /* No topic for this message: it can never go. */
    d->tail++;
    s->done = true;
    s->outcome = CAD_KAFKA_FAIL;
    snprintf(s->detail, sizeof s->detail, "no topic (%s)", cad_err_name(tl));
    d->refused = true;
    uv_timer_start(&d->timer, on_tick, 0, 100);
    return 0;
  }
  const char *key = NULL;
  size_t keylen = 0;
  cad_hl7_path_t kp;
  cad_hl7_match_t mt;
  cad_str_t kv;
  if (parsed && d->conf->key_path &&
      cad_hl7_path_parse(d->conf->key_path, strlen(d->conf->key_path), &kp, NULL, NULL) == 0 &&
      cad_hl7_get(&m, &kp, &mt) && cad_hl7_value(&kp, &mt, &d->arena, &kv) && kv.len) {
    key = kv.p;
    keylen = kv.len;
  }
  rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
  static const char *const hnames[] = {"MSH-3", "MSH-4", "MSH-9", "MSH-10"};
  for (size_t i = 0; parsed && i < 4; i++) {
    cad_hl7_path_t hp;
    if (cad_hl7_path_parse(hnames[i], strlen(hnames[i]), &hp, NULL, NULL) == 0 &&
        cad_hl7_get(&m, &hp, &mt) && mt.raw.len)
      rd_kafka_header_add(hdrs, hnames[i], -1, mt.raw.p, (ssize_t)mt.raw.len);
  }
  rd_kafka_resp_err_t e = rd_kafka_producev(
      d->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE((void *)(uintptr_t)p, len), RD_KAFKA_V_KEY(key, keylen),
      RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)id), RD_KAFKA_V_END);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_headers_destroy(hdrs); /* not taken on failure */
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) return CAD_E_FULL;
    /* Refused before it left (too large for message.max.bytes, an unknown
     * topic, ...): answered like a delivery report, in order. */
    d->tail++;
    s->done = true;
    s->outcome = permanent(e) ? CAD_KAFKA_FAIL : CAD_KAFKA_RETRY;
    snprintf(s->detail, sizeof s->detail, "%s", rd_kafka_err2name(e));
    d->refused = true;
    uv_timer_start(&d->timer, on_tick, 0, 100);
    return 0;
  }
  d->tail++;
  return 0;
}

static void handle_closed(uv_handle_t *h) {
  cad_kafka_dest_t *d = h->data;
  if (--d->open_handles > 0) return;
  /* The poll handle is closed: its descriptor may go now. */
  close(d->pipefd[0]);
  close(d->pipefd[1]);
  free(d);
}

void cad_kafka_dest_close(cad_kafka_dest_t *d) {
  if (!d) return;
  d->closing = true;
  drop_producer(d);
  /* Whatever the purge did not report: not acknowledged, so RETRY. */
  for (uint64_t id = d->head; id < d->tail; id++) {
    slot_t *s = &d->slots[id % CAD_KAFKA_WINDOW];
    if (!s->done) {
      s->done = true;
      s->outcome = CAD_KAFKA_RETRY;
      snprintf(s->detail, sizeof s->detail, "closing");
    }
  }
  answer_head(d);
  cad_arena_free(&d->arena);
  uv_close((uv_handle_t *)&d->poll, handle_closed);
  uv_close((uv_handle_t *)&d->timer, handle_closed);
}
