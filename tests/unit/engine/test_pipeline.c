/* test_pipeline.c - the message path (engine/runtime/pipeline.h) without
 * sockets or a disk: a fake io table records the replies, the queue writes
 * (completed by the test, so "no ACK before durable" can be seen), the
 * waits and the log lines.  Every outcome is driven and its ACK (code,
 * MSA-2, MSA-3, ERR), counters and log line are checked. */
#include "pipeline.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "harness.h"

/* ---- a fake io ---------------------------------------------------------- */

#define MAXREC 16

typedef struct pending {
  cad_queue_append_cb cb;
  void *ud;
  size_t n;
  uint16_t qid;
  char reason[96];
  char bytes[512]; /* the first record's bytes (truncated), NUL-terminated */
} pending_t;

typedef struct fake {
  int append_rc; /* what append returns (0 = accept the write) */
  int dest_rc;   /* what io->dest returns */
  pending_t appends[MAXREC];
  int nappends;
  char replies[MAXREC][2048];
  size_t reply_len[MAXREC];
  unsigned reply_flags[MAXREC];
  int nreplies;
  char dest_names[4][96];
  int ndests;
  void (*wait_cb[MAXREC])(void *, int);
  void *wait_ud[MAXREC];
  int nwaits;
  /* the last log line */
  char event[48], outcome[16], error[32], text[256], ctl[80];
  cad_log_level_t level;
  int64_t bytes;
  int nlogs;
  int holds;
  /* the last archive record */
  int narch;
  uint64_t arch_id, arch_last_id, arch_seqs[4], arch_size;
  uint16_t arch_qids[4];
  size_t arch_nq, arch_len;
  char arch_status[16], arch_ack[16], arch_reason[256];
  int log_id_seen; /* the log line carried id= the archive's id */
} fake_t;

static fake_t F;

static int f_append(void *ud, const cad_queue_item_t *items, size_t n, cad_queue_append_cb cb,
                    void *cb_ud) {
  (void)ud;
  if (F.append_rc) return F.append_rc;
  pending_t *pe = &F.appends[F.nappends++];
  *pe = (pending_t){cb, cb_ud, n, n ? items[0].dest : 0, "", ""};
  if (n) {
    size_t k = items[0].len < sizeof pe->bytes - 1 ? items[0].len : sizeof pe->bytes - 1;
    memcpy(pe->bytes, items[0].p, k);
    pe->bytes[k] = 0;
  }
  return 0;
}

static int f_dead_letter(void *ud, uint16_t qid, const char *reason, const char *p, size_t len,
                         cad_queue_append_cb cb, void *cb_ud) {
  (void)ud;
  (void)p;
  (void)len;
  if (F.append_rc) return F.append_rc;
  pending_t *pe = &F.appends[F.nappends++];
  *pe = (pending_t){cb, cb_ud, 0, qid, "", ""};
  snprintf(pe->reason, sizeof pe->reason, "%s", reason);
  return 0;
}

static int f_dest(void *ud, const char *name) {
  (void)ud;
  if (F.dest_rc < 0) return F.dest_rc;
  snprintf(F.dest_names[F.ndests], sizeof F.dest_names[0], "%s", name);
  return 40 + F.ndests++;
}

static uint16_t f_dest_qid(void *ud, void *owner, size_t index) {
  (void)ud;
  (void)owner;
  return (uint16_t)(10 + index);
}

static int f_wait(void *ud, uint16_t qid, uint64_t seq, void (*cb)(void *, int), void *cb_ud) {
  (void)ud;
  (void)qid;
  (void)seq;
  F.wait_cb[F.nwaits] = cb;
  F.wait_ud[F.nwaits++] = cb_ud;
  return 0;
}

static void f_reply(void *ud, void *req, const char *ack, size_t len, unsigned flags) {
  (void)ud;
  (void)req;
  int i = F.nreplies++;
  if (len >= sizeof F.replies[0]) len = sizeof F.replies[0] - 1;
  memcpy(F.replies[i], ack ? ack : "", len);
  F.replies[i][len] = 0;
  F.reply_len[i] = len;
  F.reply_flags[i] = flags;
}

static void copy_str(char *dst, size_t cap, const char *p, size_t n) {
  if (!p) n = 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(dst, p, n);
  dst[n] = 0;
}

static void f_log(void *ud, cad_log_level_t level, const char *event, const cad_log_ctx_t *c,
                  const char *text) {
  (void)ud;
  F.nlogs++;
  F.level = level;
  copy_str(F.event, sizeof F.event, event, strlen(event));
  copy_str(F.outcome, sizeof F.outcome, c->outcome, c->outcome ? strlen(c->outcome) : 0);
  copy_str(F.error, sizeof F.error, c->error, c->error ? strlen(c->error) : 0);
  copy_str(F.text, sizeof F.text, text, text ? strlen(text) : 0);
  copy_str(F.ctl, sizeof F.ctl, c->ctl.p, c->ctl.len);
  F.bytes = c->bytes;
  F.log_id_seen = 0;
  for (size_t i = 0; i < c->nnums; i++)
    if (strcmp(c->nums[i].key, "id") == 0) F.log_id_seen = c->nums[i].val != 0;
}

static void f_archive(void *ud, const cad_archive_in_t *r) {
  (void)ud;
  F.narch++;
  F.arch_last_id = F.arch_id;
  F.arch_id = r->id;
  copy_str(F.arch_status, sizeof F.arch_status, r->status, strlen(r->status));
  copy_str(F.arch_ack, sizeof F.arch_ack, r->ack, r->ack ? strlen(r->ack) : 0);
  copy_str(F.arch_reason, sizeof F.arch_reason, r->reason, r->reason ? strlen(r->reason) : 0);
  F.arch_nq = r->nq;
  for (size_t i = 0; i < r->nq && i < 4; i++) {
    F.arch_qids[i] = r->qids[i];
    F.arch_seqs[i] = r->seqs[i];
  }
  F.arch_len = r->len;
  F.arch_size = r->size;
}

static void f_hold(void *ud, void *owner, int delta) {
  (void)ud;
  (void)owner;
  F.holds += delta;
}

static const cad_pipe_io_t fake_io = {NULL,   f_append, f_dead_letter, f_dest, f_dest_qid,
                                      f_wait, f_reply,  f_log,         f_hold, f_archive};

/* Complete pending write i (status 0: durable). */
static void complete(int i, int status) {
  static const uint64_t seqs[MAXREC] = {7, 8, 9};
  pending_t *pe = &F.appends[i];
  pe->cb(pe->ud, status, status == 0 && pe->n ? seqs : NULL, status == 0 ? pe->n : 0);
}

/* ---- a configuration with one channel per outcome ------------------------ */

static const char *CONFIG =
    "engine:\n"
    "  data_dir: /tmp/cad-test-pipeline-unused\n"
    "tables:\n"
    "  sexes: { values: { M: male } }\n"
    "destinations:\n"
    "  a: { type: file, dir: /tmp/cad-test-pipeline-a }\n"
    "  b: { type: file, dir: /tmp/cad-test-pipeline-b }\n"
    "  u: { type: file, dir: /tmp/cad-test-pipeline-u, encoding: UNICODE UTF-8 }\n"
    "  x: { type: file, dir: /tmp/cad-test-pipeline-x, encoding: ASCII }\n"
    "channels:\n"
    "  acc:\n"
    "    listen: [\"127.0.0.1:1\"]\n"
    "    max_message_size: 1KiB\n"
    "    to: [a, b]\n"
    "  flt:\n"
    "    listen: [\"127.0.0.1:2\"]\n"
    "    routes:\n"
    "      - { name: oru, when: { path: MSH-9.1, equals: ORU }, to: a }\n"
    "  unr:\n"
    "    listen: [\"127.0.0.1:3\"]\n"
    "    routes:\n"
    "      - { name: oru, when: { path: MSH-9.1, equals: ORU }, to: a }\n"
    "    unrouted: reject\n"
    "  err:\n"
    "    listen: [\"127.0.0.1:4\"]\n"
    "    routes:\n"
    "      - name: sex\n"
    "        transform: [ { map: PID-8, table: sexes, default: reject } ]\n"
    "        to: a\n"
    "    on_error: reject\n"
    "  dl:\n"
    "    listen: [\"127.0.0.1:5\"]\n"
    "    routes:\n"
    "      - name: sex\n"
    "        transform: [ { map: PID-8, table: sexes, default: reject } ]\n"
    "        to: a\n"
    "    on_error: dead_letter\n"
    "  rcv:\n"
    "    listen: [\"127.0.0.1:6\"]\n"
    "    ack: { policy: received }\n"
    "    to: [a]\n"
    "  dlv:\n"
    "    listen: [\"127.0.0.1:7\"]\n"
    "    ack: { policy: delivered }\n"
    "    to: [a, b]\n"
    "  l1:\n" /* character sets (chan_route.h) */
    "    listen: [\"127.0.0.1:8\"]\n"
    "    charset: 8859/1\n"
    "    to: [u]\n"
    "  asc:\n"
    "    listen: [\"127.0.0.1:9\"]\n"
    "    to: [x]\n"
    "  ascdl:\n"
    "    listen: [\"127.0.0.1:10\"]\n"
    "    routes: [ { to: x } ]\n"
    "    on_error: dead_letter\n";

static const char *ADT =
    "MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101120000||ADT^A01^ADT_A01|C123|P|2.5.1\r"
    "PID|1||12345^^^H^MR||DOE^JANE||19700101|F\r";

typedef struct world {
  cad_config_t *cfg;
  cad_pipe_t p;
  cad_pipe_chan_t ch;
  cad_chan_stats_t st;
  int owner;
} world_t;

static bool setup(world_t *w, const char *channel) {
  memset(&F, 0, sizeof F);
  memset(w, 0, sizeof *w);
  char *err = NULL;
  int rc =
      cad_config_load_mem("t.yaml", CONFIG, strlen(CONFIG), CAD_CONFIG_NO_INCLUDE, &w->cfg, &err);
  if (rc != 0) {
    fprintf(stderr, "config: %s\n", err ? err : "?");
    free(err);
    return false;
  }
  free(err);
  cad_pipe_init(&w->p, &fake_io);
  for (size_t i = 0; i < w->cfg->nchannels; i++)
    if (strcmp(w->cfg->channels[i].name, channel) == 0) {
      snprintf(w->st.name, sizeof w->st.name, "%s", channel);
      cad_pipe_chan_init(&w->ch, &w->cfg->channels[i], &w->st, &w->owner);
      return true;
    }
  return false;
}

static void teardown(world_t *w) {
  CHECK_INT(F.holds, 0); /* every message let go of its runtime */
  cad_config_free(w->cfg);
}

static void send_msg(world_t *w, const char *msg, size_t len) {
  cad_pipe_frame_t f = {NULL, 0, {msg, len}, 0, false, 3, "127.0.0.1:999", NULL};
  cad_pipe_frame(&w->p, &w->ch, &f);
}

#define SEND(w, s) send_msg((w), (s), strlen(s))

/* Field n of the first segment `seg` in the last reply ("" when absent). */
static const char *ack_field(const char *seg, int n) {
  static char out[256];
  out[0] = 0;
  if (F.nreplies == 0) return out;
  const char *a = F.replies[F.nreplies - 1];
  char fs = a[3];
  const char *s = a;
  while (s && *s) {
    if (strncmp(s, seg, 3) == 0 && s[3] == fs) break;
    s = strchr(s, '\r');
    if (s) s++;
  }
  if (!s || !*s) return out;
  const char *end = strchr(s, '\r');
  if (!end) end = s + strlen(s);
  int k = strcmp(seg, "MSH") == 0 ? 1 : 0;
  const char *q = s + 3;
  while (q < end && k < n) {
    q++;
    k++;
    if (k == n) break;
    const char *nx = memchr(q, fs, (size_t)(end - q));
    if (!nx) return out;
    q = nx;
  }
  if (k != n) return out;
  const char *e = memchr(q, fs, (size_t)(end - q));
  if (!e) e = end;
  copy_str(out, sizeof out, q, (size_t)(e - q));
  return out;
}

static bool prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* ---- the outcomes -------------------------------------------------------- */

TEST(accepted_only_once_durable) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  SEND(&w, ADT);
  CHECK_INT(F.nappends, 1);
  CHECK_INT((int)F.appends[0].n, 2); /* one record per destination */
  CHECK_INT(F.appends[0].qid, 10);
  CHECK_INT(F.nreplies, 0); /* nothing before the records are durable */
  complete(0, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AA");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK_STR(ack_field("MSH", 9), "ACK^A01^ACK");
  CHECK_STR(ack_field("ERR", 1), "");
  CHECK(strstr(F.replies[0], "\rERR") == NULL);
  CHECK_INT(F.reply_flags[0] & 0xff, 0);
  CHECK_INT(CAD_PIPE_REPLY_OUTCOME(F.reply_flags[0]), CAD_PIPE_ACCEPTED);
  CHECK_INT((int)w.st.received, 1);
  CHECK_INT((int)w.st.accepted, 1);
  CHECK_INT((int)w.st.queued, 1);
  CHECK_INT((int)(w.st.rejected + w.st.errors + w.st.filtered), 0);
  CHECK_STR(F.event, "msg.accepted");
  CHECK_INT(F.level, CAD_LOG_INFO);
  CHECK_STR(F.outcome, "AA");
  CHECK_STR(F.ctl, "C123");
  CHECK_INT((int)F.bytes, (int)strlen(ADT));
  CHECK_STR(F.text, "");
  teardown(&w);
}

TEST(filtered) {
  world_t w;
  REQUIRE(setup(&w, "flt"));
  SEND(&w, ADT);
  CHECK_INT(F.nappends, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AA");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK_INT((int)w.st.filtered, 1);
  CHECK_INT((int)w.st.accepted, 1);
  CHECK_INT((int)w.st.queued, 0);
  CHECK_STR(F.event, "msg.filtered");
  CHECK_STR(F.text, "no route took it (unrouted: drop)");
  teardown(&w);
}

TEST(rejected_by_the_parser) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  char bad[512];
  snprintf(bad, sizeof bad, "%sP!1|1|I\r", ADT);
  SEND(&w, bad);
  CHECK_INT(F.nappends, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AR");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK_STR(ack_field("MSA", 3), ""); /* v2.5: the text is in ERR */
  CHECK_STR(ack_field("ERR", 2), "P!1^3");
  CHECK(prefix(ack_field("ERR", 3), "100^"));
  CHECK_STR(ack_field("ERR", 4), "E");
  CHECK_STR(ack_field("ERR", 8), "segment id is not 3 letters or digits");
  CHECK_INT((int)w.st.rejected, 1);
  CHECK_STR(F.event, "msg.rejected");
  CHECK_INT(F.level, CAD_LOG_WARN);
  CHECK_STR(F.outcome, "AR");
  CHECK_STR(F.error, "CAD_E_SEGMENT");
  CHECK_STR(F.text, "segment id is not 3 letters or digits (HL7 100, segment 3 field 0)");
  teardown(&w);
}

TEST(rejected_v23_has_msa3) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  SEND(&w, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X9|P|2.3\rPID|1\rP!1|x\r");
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AR");
  CHECK_STR(ack_field("MSA", 2), "X9");
  CHECK_STR(ack_field("MSA", 3), "Segment sequence error");
  CHECK_STR(ack_field("ERR", 1), "P!1^3^^100&Segment sequence error&HL70357");
  teardown(&w);
}

TEST(unparseable_header_gets_a_stand_in_nak) {
  const char *inputs[] = {"MSH|", "MSHX|^~\\&|A|B|C|D|2026||ADT^A01|Z|P|2.5\r", "PID|1||x\r"};
  const char *codes[] = {"102^", "102^", "100^"};
  for (int i = 0; i < 3; i++) {
    world_t w;
    REQUIRE(setup(&w, "acc"));
    SEND(&w, inputs[i]);
    REQUIRE(F.nreplies == 1);
    CHECK(prefix(F.replies[0], "MSH|^~\\&|||||"));
    CHECK_STR(ack_field("MSA", 1), "AR");
    CHECK_STR(ack_field("MSA", 2), "");
    CHECK(prefix(ack_field("ERR", 3), codes[i]));
    CHECK(ack_field("ERR", 8)[0] != 0);
    CHECK_INT((int)w.st.rejected, 1);
    CHECK_INT((int)w.st.unanswered, 0);
    CHECK_STR(F.event, "msg.rejected");
    CHECK_STR(F.ctl, "");
    teardown(&w);
  }
}

TEST(unrouted_rejected) {
  world_t w;
  REQUIRE(setup(&w, "unr"));
  SEND(&w, ADT);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AR");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK(prefix(ack_field("ERR", 3), "200^"));
  CHECK_INT((int)w.st.rejected, 1);
  CHECK_STR(F.event, "msg.unrouted");
  CHECK(strstr(F.text, "(HL7 200)") != NULL);
  teardown(&w);
}

TEST(route_error) {
  world_t w;
  REQUIRE(setup(&w, "err"));
  SEND(&w, ADT); /* PID-8 F is not in the table: default reject */
  CHECK_INT(F.nappends, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK(prefix(ack_field("ERR", 3), "103^"));
  CHECK_STR(ack_field("ERR", 2), "PID^2^8");
  CHECK(strstr(ack_field("ERR", 8), "not in table") != NULL);
  CHECK_INT((int)w.st.errors, 1);
  CHECK_STR(F.event, "msg.route_error");
  CHECK_STR(F.outcome, "AE");
  CHECK(strstr(F.text, "(HL7 103)") != NULL);
  teardown(&w);
}

TEST(dead_letter) {
  world_t w;
  REQUIRE(setup(&w, "dl"));
  SEND(&w, ADT);
  CHECK_INT(F.ndests, 1);
  CHECK_STR(F.dest_names[0], "channel:dl");
  REQUIRE(F.nappends == 1);
  CHECK_INT(F.appends[0].qid, 40);
  CHECK(strstr(F.appends[0].reason, "not in table") != NULL);
  CHECK_INT(F.nreplies, 0); /* AA only once the dead letter is durable */
  complete(0, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AA");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK_INT((int)w.st.dead_lettered, 1);
  CHECK_INT((int)w.st.accepted, 1);
  CHECK_STR(F.event, "msg.dead_letter");
  CHECK_INT(F.level, CAD_LOG_WARN);
  CHECK(strstr(F.text, "not in table") != NULL);
  /* The second one reuses the registered queue id. */
  SEND(&w, ADT);
  CHECK_INT(F.ndests, 1);
  REQUIRE(F.nappends == 2);
  complete(1, CAD_E_IO); /* and a failed dead-letter write is an AE */
  REQUIRE(F.nreplies == 2);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK_STR(F.event, "msg.not_accepted");
  CHECK(strstr(F.text, "dead-letter write failed") != NULL);
  CHECK_INT((int)w.st.dead_lettered, 1);
  CHECK_INT((int)w.st.errors, 1);
  teardown(&w);
}

TEST(dead_letter_queue_that_cannot_be_registered) {
  world_t w;
  REQUIRE(setup(&w, "dl"));
  F.dest_rc = CAD_E_IO;
  SEND(&w, ADT);
  CHECK_INT(F.nappends, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK_STR(F.event, "msg.not_accepted");
  CHECK(strstr(F.text, "dead-letter write failed") != NULL);
  F.dest_rc = 0; /* tried again with the next message */
  SEND(&w, ADT);
  CHECK_INT(F.ndests, 1);
  CHECK_INT(F.nappends, 1);
  complete(0, 0);
  CHECK_STR(ack_field("MSA", 1), "AA");
  teardown(&w);
}

TEST(too_big) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  cad_pipe_frame_t f = {NULL, CAD_E_TOOBIG, {ADT, strlen(ADT)}, 5000, true, 3, "p", NULL};
  cad_pipe_frame(&w.p, &w.ch, &f);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AR");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK(prefix(ack_field("ERR", 3), "207^"));
  CHECK_STR(ack_field("ERR", 8), "message larger than max_message_size (1024 bytes)");
  CHECK_INT(F.reply_flags[0] & 0xff, CAD_PIPE_REPLY_CLOSE);
  CHECK_INT(CAD_PIPE_REPLY_OUTCOME(F.reply_flags[0]), CAD_PIPE_TOO_BIG);
  CHECK_INT((int)w.st.rejected, 1);
  CHECK_STR(F.event, "msg.too_big");
  CHECK_STR(F.error, "CAD_E_TOOBIG");
  CHECK_STR(F.text, "message of at least 5000 bytes, larger than max_message_size (1024 bytes)");
  CHECK_INT((int)F.bytes, 5000);
  /* Seen whole: the exact size. */
  f.cut = false;
  f.size = 1500;
  cad_pipe_frame(&w.p, &w.ch, &f);
  CHECK_STR(F.text, "message of 1500 bytes, larger than max_message_size (1024 bytes)");
  teardown(&w);
}

TEST(not_accepted_when_the_queue_refuses_or_fails) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  F.append_rc = CAD_E_FULL;
  SEND(&w, ADT);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK_STR(ack_field("MSA", 2), "C123");
  CHECK(prefix(ack_field("ERR", 3), "207^"));
  CHECK_STR(ack_field("ERR", 8), "queue full: CAD_E_FULL");
  CHECK_STR(F.event, "msg.not_accepted");
  CHECK_INT(F.level, CAD_LOG_ERROR);
  CHECK_STR(F.error, "CAD_E_FULL");
  F.append_rc = 0;
  SEND(&w, ADT);
  complete(0, CAD_E_IO);
  REQUIRE(F.nreplies == 2);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK_STR(ack_field("ERR", 8), "queue write failed: CAD_E_IO");
  CHECK_INT((int)w.st.errors, 2);
  CHECK_INT((int)w.st.queued, 0);
  teardown(&w);
}

TEST(received_policy_acks_first) {
  world_t w;
  REQUIRE(setup(&w, "rcv"));
  SEND(&w, ADT);
  REQUIRE(F.nreplies == 1); /* at once */
  CHECK_STR(ack_field("MSA", 1), "AA");
  REQUIRE(F.nappends == 1);
  complete(0, CAD_E_IO); /* lost after the ACK: said loudly */
  CHECK_STR(F.event, "msg.lost");
  CHECK_INT(F.level, CAD_LOG_ERROR);
  CHECK_INT((int)w.st.errors, 1);
  teardown(&w);
}

TEST(delivered_policy_waits_for_every_destination) {
  world_t w;
  REQUIRE(setup(&w, "dlv"));
  SEND(&w, ADT);
  complete(0, 0);
  CHECK_INT(F.nreplies, 0);
  REQUIRE(F.nwaits == 2);
  F.wait_cb[0](F.wait_ud[0], 0);
  CHECK_INT(F.nreplies, 0);
  F.wait_cb[1](F.wait_ud[1], 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AA");
  /* One destination gives up: AE. */
  SEND(&w, ADT);
  complete(1, 0);
  REQUIRE(F.nwaits == 4);
  F.wait_cb[2](F.wait_ud[2], CAD_E_IO);
  F.wait_cb[3](F.wait_ud[3], 0);
  REQUIRE(F.nreplies == 2);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK(strstr(ack_field("ERR", 8), "not delivered") != NULL);
  teardown(&w);
}

TEST(missing_msh10_is_located) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  SEND(&w, "MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\rPID|1\r");
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AR");
  CHECK_STR(ack_field("ERR", 2), "MSH^1^10");
  CHECK(prefix(ack_field("ERR", 3), "101^"));
  teardown(&w);
}

TEST(control_ids_are_unique) {
  cad_pipe_t p;
  cad_pipe_init(&p, &fake_io);
  char a[24], b[24];
  cad_pipe_next_ctl(&p, a);
  cad_pipe_next_ctl(&p, b);
  CHECK_INT((int)strlen(a), 19);
  CHECK(strcmp(a, b) != 0);
  p.ctl_counter = 0x100000000ull; /* a wrap moves the prefix on */
  char c[24];
  cad_pipe_next_ctl(&p, c);
  CHECK(strncmp(a, c, 11) < 0);
  /* The prefix's low 44 bits in 11 hex digits, the counter in 8. */
  p.ctl_prefix = 0xF123456789ABull;
  p.ctl_counter = 0xCDEF;
  cad_pipe_next_ctl(&p, c);
  CHECK_STR(c, "123456789AB0000CDEF");
  cad_pipe_next_ctl(&p, c);
  CHECK_STR(c, "123456789AB0000CDF0");
}

TEST(stats_tell_64_byte_channel_names_apart) {
  /* Config allows 64-byte names; two that differ only in the last byte
   * are two channels with their own counters. */
  char a[65], b[65];
  memset(a, 'x', 64);
  a[64] = 0;
  memcpy(b, a, sizeof b);
  b[63] = 'y';
  cad_chan_stats_t *sa = cad_stats_get(a), *sb = cad_stats_get(b);
  REQUIRE(sa && sb);
  CHECK(sa != sb);
  CHECK(cad_stats_get(a) == sa);
  CHECK_STR(sb->name, b);
  cad_stats_free_all();
}

/* Every outcome is archived once, after its ACK, with the status, the ACK
 * code, the queue records and an id that the log line also carries. */
TEST(every_outcome_is_archived) {
  world_t w;
  REQUIRE(setup(&w, "acc"));
  SEND(&w, ADT);
  CHECK_INT(F.narch, 0); /* not before it is concluded */
  complete(0, 0);
  REQUIRE(F.narch == 1);
  CHECK_STR(F.arch_status, "accepted");
  CHECK_STR(F.arch_ack, "AA");
  CHECK_INT((int)F.arch_nq, 2);
  CHECK_INT(F.arch_qids[0], 10);
  CHECK_INT(F.arch_qids[1], 11);
  CHECK_INT((int)F.arch_seqs[0], 7);
  CHECK_INT((int)F.arch_seqs[1], 8);
  CHECK_INT((int)F.arch_len, (int)strlen(ADT));
  CHECK(F.arch_id != 0);
  CHECK_INT(F.log_id_seen, 1);
  /* Unparseable: AR, the raw bytes kept. */
  SEND(&w, "NOT HL7 AT ALL");
  REQUIRE(F.narch == 2);
  CHECK_STR(F.arch_status, "unparseable");
  CHECK_STR(F.arch_ack, "AR");
  CHECK_INT((int)F.arch_len, 14);
  CHECK_INT((int)F.arch_nq, 0);
  CHECK(F.arch_id > F.arch_last_id); /* ids grow */
  /* Too big: the first bytes and the full size. */
  cad_pipe_frame_t f = {NULL, CAD_E_TOOBIG, {ADT, 20}, 5000, false, 3, "p", NULL};
  cad_pipe_frame(&w.p, &w.ch, &f);
  REQUIRE(F.narch == 3);
  CHECK_STR(F.arch_status, "too_big");
  CHECK_INT((int)F.arch_len, 20);
  CHECK_INT((int)F.arch_size, 5000);
  /* A queue refusing the message: error, AE. */
  F.append_rc = CAD_E_FULL;
  SEND(&w, ADT);
  REQUIRE(F.narch == 4);
  CHECK_STR(F.arch_status, "error");
  CHECK_STR(F.arch_ack, "AE");
  CHECK(strstr(F.arch_reason, "queue full") != NULL);
  teardown(&w);
  const char *chans[] = {"flt", "unr", "err", "dl"};
  const char *want[] = {"filtered", "rejected", "error", "dead"};
  const char *ack[] = {"AA", "AR", "AE", "AA"};
  for (int i = 0; i < 4; i++) {
    REQUIRE(setup(&w, chans[i]));
    SEND(&w, ADT);
    if (F.nappends) complete(0, 0);
    REQUIRE(F.narch == 1);
    CHECK_STR(F.arch_status, want[i]);
    CHECK_STR(F.arch_ack, ack[i]);
    teardown(&w);
  }
}

/* Character sets on the message path: a Latin-1 message is queued in the
 * destination's UTF-8 and its ACK echoes MSH-18; bytes that are not valid
 * in the declared set are AR 102 before any route; a character the
 * destination cannot hold is AE 102 (or a dead letter), nothing queued. */
TEST(character_sets) {
  static const char L1[] =
      "MSH|^~\\&|HNAM|CERNER|R|S|20240305||ADT^A08|Q1|P|2.3||||||8859/1\r"
      "PID|1||1^^^MRN^MRN||M\xDCLLER^JOS\xC9\r";
  world_t w;
  REQUIRE(setup(&w, "l1"));
  SEND(&w, L1);
  REQUIRE(F.nappends == 1 && F.nreplies == 0);
  CHECK(strstr(F.appends[0].bytes, "M\xC3\x9CLLER^JOS\xC3\x89") != NULL);
  CHECK(strstr(F.appends[0].bytes, "|P|2.3||||||UNICODE UTF-8\r") != NULL);
  complete(0, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AA");
  CHECK_STR(ack_field("MSH", 18), "8859/1");
  teardown(&w);

  /* Declared ASCII, a Latin-1 byte in PID-5: AR 102 at PID-5. */
  REQUIRE(setup(&w, "asc"));
  static const char BAD[] =
      "MSH|^~\\&|A|B|C|D|20240305||ADT^A08|Q2|P|2.5.1||||||ASCII\r"
      "PID|1||1^^^MRN^MRN||M\xDCLLER\r";
  SEND(&w, BAD);
  CHECK_INT(F.nappends, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AR");
  CHECK(prefix(ack_field("ERR", 3), "102^"));
  CHECK_STR(ack_field("ERR", 2), "PID^2^5");
  CHECK_STR(ack_field("MSH", 18), "ASCII");
  CHECK_STR(F.event, "msg.rejected");
  CHECK(strstr(F.text, "not valid ASCII") != NULL);
  CHECK_INT((int)w.st.rejected, 1);
  /* UTF-8 with a character ASCII lacks, to an `encoding: ASCII` destination. */
  static const char UTF[] =
      "MSH|^~\\&|A|B|C|D|20240305||ADT^A08|Q3|P|2.5.1||||||UNICODE UTF-8\r"
      "PID|1||1^^^MRN^MRN||M\xC3\x9CLLER\r";
  SEND(&w, UTF);
  CHECK_INT(F.nappends, 0);
  REQUIRE(F.nreplies == 2);
  CHECK_STR(ack_field("MSA", 1), "AE");
  CHECK(prefix(ack_field("ERR", 3), "102^"));
  CHECK(strstr(ack_field("ERR", 8), "destination 'x'") != NULL);
  CHECK_STR(F.event, "msg.route_error");
  teardown(&w);

  /* The same with on_error: dead_letter: the original goes to the dead letters. */
  REQUIRE(setup(&w, "ascdl"));
  SEND(&w, UTF);
  REQUIRE(F.nappends == 1);
  CHECK(strstr(F.appends[0].reason, "cannot represent") != NULL);
  complete(0, 0);
  REQUIRE(F.nreplies == 1);
  CHECK_STR(ack_field("MSA", 1), "AA");
  CHECK_STR(F.event, "msg.dead_letter");
  teardown(&w);
}

TEST_MAIN()
