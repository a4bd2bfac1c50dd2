/* src_kafka.c - the `listen_kafka:` source kind (source.h): a consumer group
 * reading one topic, each message fed to the channel's pipeline like an
 * MLLP message, its offset committed once the message is durable.
 *
 *   reading    librdkafka signals its consumer queue through a pipe
 *              (rd_kafka_queue_io_event_enable) watched by a uv_poll_t, and
 *              a 100 ms timer; the loop then takes what is there with
 *              rd_kafka_consumer_poll(rk, 0), at most 64 per turn.  Nothing
 *              blocks the loop; closing the consumer (it leaves the group)
 *              runs on the thread pool.
 *   in flight  every message read is kept (bytes, topic, partition, offset)
 *              in the order read until the pipeline answers it.  At
 *              max_in_flight the assigned partitions are paused (librdkafka
 *              stops fetching; the backlog stays in Kafka, not in memory)
 *              and resumed at half.  queued.max.messages.kbytes defaults to
 *              4096 here (librdkafka's own prefetch).
 *   answers    AA/CA (durable per the channel's ack.policy; or filtered, or
 *              dead-lettered by the channel): done.  AR/CR (unparseable, too
 *              big, refused by the routes) and AE/CE (a route error with
 *              on_error: reject): the original bytes go to the channel's
 *              dead letters with "kafka <topic>/<partition>@<offset>" in the
 *              reason, then done; if that write fails, the message is fed
 *              again after a second (never skipped).
 *   commits    once the oldest messages read are done, the offset after the
 *              last of them is committed per partition (asynchronously).  A
 *              crash or a rebalance resends what was read but not yet
 *              committed: at-least-once, the same message possibly twice
 *              (the archive and the journal show it with its offset).
 *   logs       the peer of each message is "kafka:<topic>/<partition>@
 *              <offset>" (log lines and the archive); never its content.
 *
 * Memory: the source owns its consumer, pipe, handles and the messages in
 * flight (at most max_in_flight, plus what one poll turn returns while
 * paused).  Loop thread only.
 */
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cad_error.h"
#include "log.h"
#include "source.h"

#define POLL_BATCH 64
#define REFEED_MS 1000

typedef struct ksrc ksrc_t;

typedef struct req {
  struct req *next;
  ksrc_t *k;
  int32_t partition;
  int64_t offset;
  bool done;
  bool refeed; /* waiting to be fed again */
  char *bytes;
  size_t len;
  char peer[160];
} req_t;

struct ksrc {
  cad_source_env_t env;
  cad_pipe_chan_t *pc;
  const cad_kafka_src_conf_t *conf; /* pc->cc->kafka */
  char *topic;                      /* owned copy (commits outlive a reload) */
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;
  int pipefd[2];
  uv_poll_t poll;
  uv_timer_t timer;
  uv_timer_t refeed; /* feeds again what could not be dead-lettered */
  uv_work_t work;    /* consumer close on the thread pool */
  int open_handles;
  cad_pipe_src_t src;
  req_t *head, *tail; /* in flight, in the order read */
  size_t ninflight;
  size_t busy; /* messages in the pipeline or being dead-lettered */
  bool paused;
  bool stopping;
  void (*stopped)(void *arg);
  void *stopped_arg;
};

static void log_line(ksrc_t *k, cad_log_level_t lvl, const char *event, const char *peer,
                     const char *text) {
  cad_log_ctx_t c = CAD_LOG_CTX_INIT;
  c.channel = k->pc->cc->name;
  c.peer = peer;
  CAD_LOG(lvl, event, &c, "%s", text);
}

/* ---- pausing ---------------------------------------------------------- */

static void set_paused(ksrc_t *k, bool pause) {
  if (k->paused == pause || !k->rk) return;
  rd_kafka_topic_partition_list_t *parts = NULL;
  if (rd_kafka_assignment(k->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) return;
  if (pause) rd_kafka_pause_partitions(k->rk, parts);
  else rd_kafka_resume_partitions(k->rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  k->paused = pause;
}

/* ---- commits ---------------------------------------------------------- */

static void finish_stop(ksrc_t *k);

/* Pop the done messages at the head; commit the offset after them. */
static void advance(ksrc_t *k) {
  rd_kafka_topic_partition_list_t *list = NULL;
  while (k->head && k->head->done) {
    req_t *r = k->head;
    k->head = r->next;
    if (!k->head) k->tail = NULL;
    k->ninflight--;
    if (!list) list = rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_t *tp =
        rd_kafka_topic_partition_list_find(list, k->topic, r->partition);
    if (!tp) tp = rd_kafka_topic_partition_list_add(list, k->topic, r->partition);
    tp->offset = r->offset + 1;
    free(r->bytes);
    free(r);
  }
  if (list) {
    if (k->rk) rd_kafka_commit(k->rk, list, 1);
    rd_kafka_topic_partition_list_destroy(list);
  }
  if (k->paused && k->ninflight <= k->conf->max_in_flight / 2) set_paused(k, false);
  if (k->stopping && k->busy == 0) finish_stop(k);
}

/* ---- feeding ------------------------------------------------------------ */

static void feed(ksrc_t *k, req_t *r) {
  cad_pipe_frame_t f;
  memset(&f, 0, sizeof f);
  f.req = r;
  f.bytes.p = r->bytes;
  f.bytes.len = r->len;
  f.peer = r->peer;
  f.src = &k->src;
  if (r->len > k->pc->cc->listener.max_frame) {
    f.status = CAD_E_TOOBIG;
    f.size = r->len;
    f.bytes.len = k->pc->cc->listener.max_frame;
  }
  k->busy++;
  cad_pipe_frame(k->env.pipe, k->pc, &f);
}

static void on_refeed(uv_timer_t *t) {
  ksrc_t *k = t->data;
  for (req_t *r = k->head; r; r = r->next)
    if (r->refeed) {
      r->refeed = false;
      feed(k, r);
    }
}

static void dead_lettered(void *ud, int status, const uint64_t *seqs, size_t n) {
  (void)seqs;
  (void)n;
  req_t *r = ud;
  ksrc_t *k = r->k;
  k->busy--;
  if (status < 0) {
    log_line(k, CAD_LOG_ERROR, "kafka.dead_letter_failed", r->peer,
             "could not dead-letter: fed again in 1s (the offset is not committed)");
    if (k->stopping) { /* read again at the next start */
      if (k->busy == 0) finish_stop(k);
      return;
    }
    r->refeed = true;
    uv_timer_start(&k->refeed, on_refeed, REFEED_MS, 0);
    return;
  }
  r->done = true;
  advance(k);
}

/* The channel answered message r: its MSA-1 says how. */
static void on_reply(void *req, const char *ack, size_t len, unsigned flags) {
  (void)flags;
  req_t *r = req;
  ksrc_t *k = r->k;
  char code = 0; /* MSA-1 is AA/AE/AR or CA/CE/CR: its second letter */
  for (size_t i = 1; i + 5 < len; i++)
    if ((ack[i - 1] == '\r' || ack[i - 1] == '\n') && memcmp(ack + i, "MSA", 3) == 0) {
      if (ack[i + 4] == 'A' || ack[i + 4] == 'C') code = ack[i + 5];
      break;
    }
  if (code == 'A') {
    k->busy--;
    r->done = true;
    advance(k);
    return;
  }
  /* Refused (R) or an error (E) or no answer: no sender to tell, so the
   * channel's dead letters keep it, with where it came from. */
  char reason[240];
  snprintf(reason, sizeof reason, "%s from %s",
           code == 'R'   ? "refused (AR)"
           : code == 'E' ? "error (AE)"
                         : "no answer",
           r->peer);
  cad_pipe_t *p = k->env.pipe;
  int qid = k->pc->dlq_qid;
  if (qid < 0 && p->io.dest) {
    char name[96];
    snprintf(name, sizeof name, "channel:%s", k->pc->cc->name);
    qid = p->io.dest(p->io.ud, name);
    if (qid >= 0) k->pc->dlq_qid = qid;
  }
  int rc = qid >= 0 && p->io.dead_letter ? p->io.dead_letter(p->io.ud, (uint16_t)qid, reason,
                                                             r->bytes, r->len, dead_lettered, r)
                                         : CAD_E_STATE;
  if (rc < 0) dead_lettered(r, rc, NULL, 0);
}

/* Messages read past the bound (fetched before a pause took effect, or from
 * a partition assigned since): the lowest offset per partition, to seek
 * back to, so that they are read again once there is room. */
static void put_back(ksrc_t *k, rd_kafka_topic_partition_list_t **back,
                     const rd_kafka_message_t *m) {
  if (!*back) *back = rd_kafka_topic_partition_list_new(4);
  if (!rd_kafka_topic_partition_list_find(*back, k->topic, m->partition))
    rd_kafka_topic_partition_list_add(*back, k->topic, m->partition)->offset = m->offset;
}

static void seek_back(ksrc_t *k, rd_kafka_topic_partition_list_t *back) {
  if (!back) return;
  rd_kafka_error_t *e = rd_kafka_seek_partitions(k->rk, back, 0);
  if (e) {
    log_line(k, CAD_LOG_WARN, "kafka.error", NULL, rd_kafka_error_name(e));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(back);
  /* Pause the whole assignment again (it may have grown). */
  k->paused = false;
  set_paused(k, true);
}

static void take(ksrc_t *k) {
  if (!k->rk || k->stopping) return;
  rd_kafka_topic_partition_list_t *back = NULL;
  for (int i = 0; i < POLL_BATCH; i++) {
    bool full = k->ninflight >= k->conf->max_in_flight;
    if (full && !k->paused) set_paused(k, true);
    /* Polled even when full: it serves the group's heartbeats and
     * rebalances (max.poll.interval.ms). */
    rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
    if (!m) break;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        log_line(k, CAD_LOG_WARN, "kafka.error", NULL, rd_kafka_err2name(m->err));
      rd_kafka_message_destroy(m);
      continue;
    }
    /* Once one message of a partition is put back, the ones after it are
     * too: an offset is never committed past one not yet taken. */
    if (back && rd_kafka_topic_partition_list_find(back, k->topic, m->partition)) full = true;
    req_t *r = full ? NULL : calloc(1, sizeof *r);
    char *b = r ? malloc(m->len ? m->len : 1) : NULL;
    if (!b) {
      /* Over the bound, or no memory: not taken, read again later. */
      free(r);
      put_back(k, &back, m);
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->len) memcpy(b, m->payload, m->len);
    r->k = k;
    r->bytes = b;
    r->len = m->len;
    r->partition = m->partition;
    r->offset = m->offset;
    snprintf(r->peer, sizeof r->peer, "kafka:%s/%d@%lld", k->topic, (int)m->partition,
             (long long)m->offset);
    rd_kafka_message_destroy(m);
    if (k->tail) k->tail->next = r;
    else k->head = r;
    k->tail = r;
    k->ninflight++;
    feed(k, r);
  }
  seek_back(k, back);
}

static void on_pipe(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  ksrc_t *k = h->data;
  char buf[256];
  while (read(k->pipefd[0], buf, sizeof buf) > 0) {
  }
  take(k);
}

static void on_tick(uv_timer_t *t) { take(t->data); }

/* ---- lifecycle ---------------------------------------------------------- */

static int make_consumer(ksrc_t *k, char *err, size_t cap) {
  const cad_kafka_src_conf_t *c = k->conf;
  rd_kafka_conf_t *kc = rd_kafka_conf_new();
  char e[256];
  const char *defaults[][2] = {
      {"auto.offset.reset", "earliest"},
      {"queued.max.messages.kbytes", "4096"},
      {"enable.partition.eof", "false"},
  };
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
    rd_kafka_conf_set(kc, defaults[i][0], defaults[i][1], e, sizeof e);
  for (size_t i = 0; i < c->nprops; i++)
    if (rd_kafka_conf_set(kc, c->props[i].name, c->props[i].value, e, sizeof e) !=
        RD_KAFKA_CONF_OK) {
      snprintf(err, cap, "librdkafka property '%s': %s", c->props[i].name, e);
      rd_kafka_conf_destroy(kc);
      return CAD_E_CONFIG;
    }
  const char *must[][2] = {
      {"bootstrap.servers", c->brokers},
      {"group.id", c->group},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
  };
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
    if (rd_kafka_conf_set(kc, must[i][0], must[i][1], e, sizeof e) != RD_KAFKA_CONF_OK) {
      snprintf(err, cap, "%s: %s", must[i][0], e);
      rd_kafka_conf_destroy(kc);
      return CAD_E_CONFIG;
    }
  k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof e);
  if (!k->rk) {
    snprintf(err, cap, "consumer: %s", e);
    rd_kafka_conf_destroy(kc);
    return CAD_E_CONFIG;
  }
  rd_kafka_poll_set_consumer(k->rk);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, k->topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t se = rd_kafka_subscribe(k->rk, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (se != RD_KAFKA_RESP_ERR_NO_ERROR) {
    snprintf(err, cap, "subscribe: %s", rd_kafka_err2str(se));
    rd_kafka_destroy(k->rk);
    k->rk = NULL;
    return CAD_E_CONFIG;
  }
  k->q = rd_kafka_queue_get_consumer(k->rk);
  rd_kafka_queue_io_event_enable(k->q, k->pipefd[1], "1", 1);
  return 0;
}

static int ksrc_start(const cad_source_env_t *env, cad_pipe_chan_t *pc, void **out, char *err,
                      size_t cap) {
  ksrc_t *k = calloc(1, sizeof *k);
  if (!k) return CAD_E_NOMEM;
  k->env = *env;
  k->pc = pc;
  k->conf = &pc->cc->kafka;
  k->src = (cad_pipe_src_t){"kafka", on_reply};
  k->topic = strdup(k->conf->topic);
  if (!k->topic || pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    free(k->topic);
    free(k);
    return CAD_E_NOMEM;
  }
  int rc = make_consumer(k, err, cap);
  if (rc < 0) {
    close(k->pipefd[0]);
    close(k->pipefd[1]);
    free(k->topic);
    free(k);
    return rc;
  }
  uv_poll_init(env->loop, &k->poll, k->pipefd[0]);
  k->poll.data = k;
  uv_poll_start(&k->poll, UV_READABLE, on_pipe);
  uv_timer_init(env->loop, &k->timer);
  k->timer.data = k;
  uv_timer_start(&k->timer, on_tick, 100, 100);
  uv_timer_init(env->loop, &k->refeed);
  k->refeed.data = k;
  k->open_handles = 3;
  *out = k;
  return 0;
}

static bool props_equal(const cad_kafka_src_conf_t *a, const cad_kafka_src_conf_t *b) {
  if (a->nprops != b->nprops) return false;
  for (size_t i = 0; i < a->nprops; i++)
    if (strcmp(a->props[i].name, b->props[i].name) || strcmp(a->props[i].value, b->props[i].value))
      return false;
  return true;
}

static int ksrc_adopt(void *s, cad_pipe_chan_t *pc) {
  ksrc_t *k = s;
  const cad_kafka_src_conf_t *n = &pc->cc->kafka;
  if (strcmp(n->brokers, k->conf->brokers) || strcmp(n->topic, k->topic) ||
      strcmp(n->group, k->conf->group) || !props_equal(n, k->conf))
    return 1;
  k->pc = pc;
  k->conf = n;
  return 0;
}

static void handle_closed(uv_handle_t *h) {
  ksrc_t *k = h->data;
  if (--k->open_handles > 0) return;
  close(k->pipefd[0]);
  close(k->pipefd[1]);
  void (*cb)(void *) = k->stopped;
  void *arg = k->stopped_arg;
  free(k->topic);
  free(k);
  if (cb) cb(arg);
}

static void close_work(uv_work_t *w) {
  ksrc_t *k = w->data;
  /* Leaves the group (its partitions go to the other members) and waits
   * for librdkafka's threads: blocking, so off the loop. */
  rd_kafka_consumer_close(k->rk);
  rd_kafka_destroy(k->rk);
}

static void close_done(uv_work_t *w, int status) {
  (void)status;
  ksrc_t *k = w->data;
  k->rk = NULL;
  uv_close((uv_handle_t *)&k->poll, handle_closed);
  uv_close((uv_handle_t *)&k->timer, handle_closed);
  uv_close((uv_handle_t *)&k->refeed, handle_closed);
}

/* Every message read is answered: close the consumer. */
static void finish_stop(ksrc_t *k) {
  if (!k->rk || k->work.data) return;
  /* What was read and not answered (a message waiting to be fed again)
   * is dropped uncommitted: read again at the next start. */
  while (k->head) {
    req_t *r = k->head;
    k->head = r->next;
    free(r->bytes);
    free(r);
  }
  k->tail = NULL;
  k->ninflight = 0;
  uv_timer_stop(&k->timer);
  uv_poll_stop(&k->poll);
  rd_kafka_queue_io_event_enable(k->q, -1, NULL, 0);
  rd_kafka_queue_destroy(k->q);
  k->q = NULL;
  k->work.data = k;
  if (uv_queue_work(k->env.loop, &k->work, close_work, close_done) != 0) {
    close_work(&k->work);
    close_done(&k->work, 0);
  }
}

static void ksrc_stop(void *s, void (*done)(void *arg), void *arg) {
  ksrc_t *k = s;
  k->stopping = true;
  k->stopped = done;
  k->stopped_arg = arg;
  uv_timer_stop(&k->timer);
  /* Messages waiting to be fed again are given up here: their offsets are
   * not committed, so they are read again at the next start. */
  uv_timer_stop(&k->refeed);
  if (k->busy == 0) finish_stop(k);
}

static bool ksrc_wanted(const cad_conf_channel_t *cc) { return cc->kafka.enabled; }

const cad_source_kind_t cad_source_kind_kafka = {
    "kafka", ksrc_wanted, ksrc_start, ksrc_adopt, ksrc_stop,
};
