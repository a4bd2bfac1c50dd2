/* cli_queue.c - `caduceus queue`: look into and repair the durable queue.
 *
 * Read-only commands (stats, list, show) open the journal read-only and are
 * safe while the engine runs.  Changing commands (requeue, purge) append
 * records to the journal, so they need the engine stopped: they take the
 * data directory's lock (data_dir/lock, held by a running engine) and refuse
 * when it is held.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cad_error.h"
#include "cad_io.h"
#include "cad_json.h"
#include "cli.h"
#include "lanes.h"
#include "hl7.h"
#include "journal.h"
#include "lock.h"

typedef struct {
  char jdir[4096], dlqdir[4096];
  cad_journal_t j, dlq;
  bool have_dlq;
} qctx_t;

static int open_dirs(qctx_t *c, const char *data_dir, bool writable) {
  snprintf(c->jdir, sizeof c->jdir, "%s/journal", data_dir);
  snprintf(c->dlqdir, sizeof c->dlqdir, "%s/deadletter", data_dir);
  int rc = cad_journal_open(&c->j, c->jdir, 0, !writable);
  if (rc) {
    fprintf(stderr, "caduceus queue: cannot open %s: %s\n", c->jdir, cad_strerror(rc));
    return rc;
  }
  rc = cad_journal_open(&c->dlq, c->dlqdir, 0, !writable);
  c->have_dlq = rc == 0;
  if (rc && writable) {
    fprintf(stderr, "caduceus queue: cannot open %s: %s\n", c->dlqdir, cad_strerror(rc));
    cad_journal_close(&c->j);
    return rc;
  }
  return 0;
}

static void close_dirs(qctx_t *c) {
  cad_journal_close(&c->j);
  if (c->have_dlq) cad_journal_close(&c->dlq);
}

static void fmt_time(uint64_t ms, char *buf, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fmt_age(uint64_t ms, char *buf, size_t cap) {
  uint64_t s = ms / 1000;
  if (s < 120) snprintf(buf, cap, "%llus", (unsigned long long)s);
  else if (s < 7200) snprintf(buf, cap, "%llum", (unsigned long long)(s / 60));
  else if (s < 172800) snprintf(buf, cap, "%lluh", (unsigned long long)(s / 3600));
  else snprintf(buf, cap, "%llud", (unsigned long long)(s / 86400));
}

/* MSH-9 and MSH-10 of a message, for listings (identifiers, not PHI). */
static void msg_ids(const char *p, size_t len, char *type, size_t tcap, char *ctl, size_t ccap) {
  snprintf(type, tcap, "?");
  snprintf(ctl, ccap, "?");
  cad_arena_t a;
  cad_arena_init(&a, 16384, 0);
  cad_hl7_msg_t m;
  if (cad_hl7_parse(&m, p, len, &a, NULL, NULL) == 0) {
    cad_hl7_path_t pt;
    cad_hl7_match_t mt;
    if (cad_hl7_path_parse("MSH-9", 5, &pt, NULL, NULL) == 0 && cad_hl7_get(&m, &pt, &mt))
      snprintf(type, tcap, "%.*s", (int)(mt.raw.len < 40 ? mt.raw.len : 40), mt.raw.p);
    if (cad_hl7_path_parse("MSH-10", 6, &pt, NULL, NULL) == 0 && cad_hl7_get(&m, &pt, &mt))
      snprintf(ctl, ccap, "%.*s", (int)(mt.raw.len < 64 ? mt.raw.len : 64), mt.raw.p);
  }
  cad_arena_free(&a);
}

/* Dead letters of a destination: which DLQ sequences are still there. */
typedef struct {
  uint64_t *done; /* DONE'd (requeued or purged) dlq sequences */
  size_t n, cap;
} seqset_t;

static bool seq_in(const seqset_t *s, uint64_t v) {
  for (size_t i = 0; i < s->n; i++)
    if (s->done[i] == v) return true;
  return false;
}

static int dlq_done_set(qctx_t *c, int id, seqset_t *out) {
  memset(out, 0, sizeof *out);
  if (!c->have_dlq || id < 0) return 0;
  cad_jreader_t r;
  if (cad_jreader_init(&r, c->dlqdir)) return CAD_E_NOMEM;
  cad_jpos_t pos = cad_journal_begin(&c->dlq), end = cad_journal_end(&c->dlq);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int rc;
  while ((rc = cad_jreader_next(&r, &pos, end, id, CAD_JREC_DONE, &rec)) == 1) {
    if (out->n == out->cap) {
      out->cap = out->cap ? out->cap * 2 : 64;
      uint64_t *nd = realloc(out->done, out->cap * sizeof *nd);
      if (!nd) {
        rc = CAD_E_NOMEM;
        break;
      }
      out->done = nd;
    }
    out->done[out->n++] = rec.seq;
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  return rc < 0 ? rc : 0;
}

/* Split a dead-letter payload: [u16 reason len][reason][u64 orig seq][message]. */
static bool dlq_split(const cad_buf_t *pl, cad_str_t *reason, uint64_t *orig, cad_str_t *msg) {
  const unsigned char *p = (const unsigned char *)pl->data;
  if (pl->len < 10) return false;
  size_t rl = (size_t)(p[0] | (p[1] << 8));
  if (2 + rl + 8 > pl->len) return false;
  reason->p = (const char *)p + 2;
  reason->len = rl;
  uint64_t s = 0;
  for (int i = 7; i >= 0; i--) s = (s << 8) | p[2 + rl + i];
  *orig = s;
  msg->p = (const char *)p + 2 + rl + 8;
  msg->len = pl->len - 2 - rl - 8;
  return true;
}

/* The dead letters of `name` still there (not requeued or purged): their
 * count, and with `each` a call per number.  A dead letter's number is
 * its message's queue sequence, so numbers need not be contiguous. */
static uint64_t dlq_live(qctx_t *c, const char *name, int (*each)(qctx_t *, int, uint64_t)) {
  int id = c->have_dlq ? cad_journal_dest(&c->dlq, name, false) : -1;
  if (id < 0) return 0;
  seqset_t gone;
  dlq_done_set(c, id, &gone);
  cad_jreader_t r;
  uint64_t n = 0;
  if (cad_jreader_init(&r, c->dlqdir) == 0) {
    cad_jpos_t pos = cad_journal_begin(&c->dlq), end = cad_journal_end(&c->dlq);
    cad_jread_t rec;
    memset(&rec, 0, sizeof rec);
    while (cad_jreader_next(&r, &pos, end, id, CAD_JREC_MSG, &rec) == 1) {
      if (seq_in(&gone, rec.seq)) continue;
      if (each && each(c, id, rec.seq) != 0) break;
      n++;
    }
    cad_buf_free(&rec.payload);
    cad_jreader_free(&r);
  }
  free(gone.done);
  return n;
}

/* One line per destination with lanes: the sums over its lanes. */
static void lane_totals(qctx_t *c, const char *only) {
  for (uint16_t d = 0; d < c->j.ndests; d++) {
    const cad_jdest_t *base = &c->j.dests[d];
    if (!base->name || strchr(base->name, '#') || (only && strcmp(only, base->name) != 0)) continue;
    unsigned lanes = 0;
    uint64_t depth = 0, delivered = 0, dead = 0;
    for (uint16_t e = 0; e < c->j.ndests; e++) {
      const cad_jdest_t *jd = &c->j.dests[e];
      if (!jd->name || cad_lanes_of(jd->name, base->name) < 0) continue;
      lanes++;
      depth += jd->last_seq > jd->done_seq ? jd->last_seq - jd->done_seq : 0;
      delivered += jd->delivered;
      dead += dlq_live(c, jd->name, NULL);
    }
    if (lanes < 2) continue;
    char label[96];
    snprintf(label, sizeof label, "%s (%u lanes)", base->name, lanes);
    printf("%-20s %10llu %12llu %8llu\n", label, (unsigned long long)depth,
           (unsigned long long)delivered, (unsigned long long)dead);
  }
}

static int cmd_stats(qctx_t *c, const char *only) {
  uint64_t now = cad_now_ms();
  printf("%-20s %10s %12s %8s %10s %10s\n", "destination", "depth", "delivered", "dead", "oldest",
         "last_seq");
  for (uint16_t d = 0; d < c->j.ndests; d++) {
    const cad_jdest_t *jd = &c->j.dests[d];
    /* `stats DATA ehr` shows ehr's lanes too (ehr#1, ...: lanes.h). */
    if (!jd->name || (only && cad_lanes_of(jd->name, only) < 0)) continue;
    uint64_t depth = jd->last_seq > jd->done_seq ? jd->last_seq - jd->done_seq : 0;
    char oldest[32] = "-";
    if (depth) {
      cad_jreader_t r;
      if (cad_jreader_init(&r, c->jdir) == 0) {
        cad_jpos_t pos = cad_journal_begin(&c->j), end = cad_journal_end(&c->j);
        cad_jread_t rec;
        memset(&rec, 0, sizeof rec);
        while (cad_jreader_next(&r, &pos, end, d, CAD_JREC_MSG, &rec) == 1) {
          if (rec.seq > jd->done_seq) {
            fmt_age(now > rec.time_ms ? now - rec.time_ms : 0, oldest, sizeof oldest);
            break;
          }
        }
        cad_buf_free(&rec.payload);
        cad_jreader_free(&r);
      }
    }
    uint64_t dead = dlq_live(c, jd->name, NULL);
    printf("%-20s %10llu %12llu %8llu %10s %10llu\n", jd->name, (unsigned long long)depth,
           (unsigned long long)jd->delivered, (unsigned long long)dead, oldest,
           (unsigned long long)jd->last_seq);
  }
  lane_totals(c, only);
  printf("journal: %zu segment(s), %llu bytes", c->j.nsegs,
         (unsigned long long)cad_journal_bytes(&c->j));
  if (c->j.stats.corrupt_records || c->j.stats.torn_bytes)
    printf("; recovery found: %s", c->j.report);
  printf("\n");
  return 0;
}

static int dest_id(qctx_t *c, const char *name, cad_journal_t *j) {
  int id = cad_journal_dest(j, name, false);
  if (id < 0 && j == &c->j)
    fprintf(stderr, "caduceus queue: no destination '%s' in %s\n", name, c->jdir);
  return id;
}

static int cmd_list(qctx_t *c, const char *dest, bool dead, uint64_t limit) {
  int id = dest_id(c, dest, dead ? &c->dlq : &c->j);
  if (id < 0) {
    if (dead) {
      printf("no dead letters for %s\n", dest);
      return 0;
    }
    return 1;
  }
  const char *dir = dead ? c->dlqdir : c->jdir;
  cad_journal_t *j = dead ? &c->dlq : &c->j;
  seqset_t gone = {0};
  if (dead) dlq_done_set(c, id, &gone);
  cad_jreader_t r;
  if (cad_jreader_init(&r, dir)) return 1;
  cad_jpos_t pos = cad_journal_begin(j), end = cad_journal_end(j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  uint64_t shown = 0;
  printf("%-8s %-20s %8s %-16s %-24s%s\n", "seq", "queued", "bytes", "type", "control_id",
         dead ? " reason" : "");
  while (cad_jreader_next(&r, &pos, end, id, CAD_JREC_MSG, &rec) == 1) {
    if (!dead && rec.seq <= c->j.dests[id].done_seq) continue;
    if (dead && seq_in(&gone, rec.seq)) continue;
    cad_str_t msg = {rec.payload.data, rec.payload.len}, reason = {"", 0};
    uint64_t orig = 0;
    if (dead && !dlq_split(&rec.payload, &reason, &orig, &msg)) continue;
    char when[32], type[48], ctl[72];
    fmt_time(rec.time_ms, when, sizeof when);
    msg_ids(msg.p, msg.len, type, sizeof type, ctl, sizeof ctl);
    printf("%-8llu %-20s %8zu %-16s %-24s", (unsigned long long)rec.seq, when, msg.len, type, ctl);
    if (dead) printf(" %.*s", (int)reason.len, reason.p);
    printf("\n");
    if (limit && ++shown >= limit) break;
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  free(gone.done);
  return 0;
}

static int find_msg(qctx_t *c, cad_journal_t *j, const char *dir, int id, uint64_t seq,
                    cad_jread_t *rec) {
  cad_jreader_t r;
  if (cad_jreader_init(&r, dir)) return CAD_E_NOMEM;
  cad_jpos_t pos = cad_journal_begin(j), end = cad_journal_end(j);
  int rc;
  while ((rc = cad_jreader_next(&r, &pos, end, id, CAD_JREC_MSG, rec)) == 1)
    if (rec->seq == seq) break;
  cad_jreader_free(&r);
  (void)c;
  return rc == 1 ? 0 : CAD_E_NOTFOUND;
}

/* What became of message `seq` of destination `id`, from the DONE, DEAD and
 * PURGE records: a DONE finishes every message up to its sequence, a DEAD
 * exactly its own (and comes after the ones before it were delivered, their
 * DONE possibly later), a PURGE every waiting one. */
typedef struct {
  const char *state; /* queued, delivered, dead, purged */
  uint64_t time_ms;  /* when it was recorded, 0 = unknown */
  char ack[128];     /* delivered: the receiver's answer, when its DONE names it */
} fate_t;

/* Escaped receiver text into fate_t.ack, whole escapes only, cut at the end. */
static int into_ack(void *ud, const char *p, size_t n) {
  char *out = ud;
  size_t have = strlen(out), cap = sizeof((fate_t *)0)->ack;
  if (have + n >= cap) {
    if (p[0] == '\\') return -1;
    n = cap - 1 - have;
    while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80) n--; /* never split a character */
  }
  memcpy(out + have, p, n);
  out[have + n] = 0;
  return have + n + 1 >= cap ? -1 : 0;
}

static fate_t find_fate(qctx_t *c, int id, uint64_t seq) {
  fate_t f = {"queued", 0, ""};
  if (seq > c->j.dests[id].done_seq) return f;
  f.state = "finished"; /* no record of how: retention removed it */
  cad_jreader_t r;
  if (cad_jreader_init(&r, c->jdir)) return f;
  cad_jpos_t pos = cad_journal_begin(&c->j), end = cad_journal_end(&c->j);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  uint64_t done = 0;
  while (cad_jreader_next(&r, &pos, end, id, 0, &rec) == 1) {
    if (rec.type == CAD_JREC_DEST && rec.payload.len >= 8) {
      /* Each segment restates how far the destination was finished. */
      const unsigned char *p = (const unsigned char *)rec.payload.data;
      uint64_t d0 = 0;
      for (int i = 7; i >= 0; i--) d0 = (d0 << 8) | p[i];
      if (d0 >= seq && done < seq) {
        f = (fate_t){"finished before the oldest journal segment", 0, ""};
        break;
      }
      if (d0 > done) done = d0;
    }
    if (rec.type != CAD_JREC_DONE && rec.type != CAD_JREC_DEAD && rec.type != CAD_JREC_PURGE)
      continue;
    if (rec.type == CAD_JREC_DEAD && rec.seq == seq) {
      f = (fate_t){"dead", rec.time_ms, ""};
      break;
    }
    if (rec.seq >= seq && done < seq) {
      f = (fate_t){rec.type == CAD_JREC_PURGE ? "purged" : "delivered", rec.time_ms, ""};
      if (rec.type == CAD_JREC_DONE && rec.seq == seq)
        cad_text_escape(CAD_ESC_KV, rec.payload.data, rec.payload.len, into_ack, f.ack);
      break;
    }
    if (rec.seq > done) done = rec.seq;
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  return f;
}

static void show_fate(qctx_t *c, int id, uint64_t seq) {
  fate_t f = find_fate(c, id, seq);
  char when[32] = "";
  if (f.time_ms) fmt_time(f.time_ms, when, sizeof when);
  fprintf(stderr, "state: %s\n", f.state);
  if (!strcmp(f.state, "delivered")) {
    fprintf(stderr, "delivered: %s\n", when);
    /* A DONE names the last message of a batch and keeps its answer; the
     * others of a batch (file destinations: up to 64) have none. */
    if (f.ack[0]) fprintf(stderr, "ack: %s\n", f.ack);
    else fprintf(stderr, "ack: none recorded (a file destination, or not the last of its batch)\n");
  } else if (!strcmp(f.state, "dead")) {
    fprintf(stderr, "dead-lettered: %s (queue show %s %llu --dead has the reason)\n", when,
            c->j.dests[id].name, (unsigned long long)seq);
  } else if (!strcmp(f.state, "purged")) {
    fprintf(stderr, "purged: %s\n", when);
  }
}

static int cmd_show(qctx_t *c, const char *dest, uint64_t seq, bool dead) {
  cad_journal_t *j = dead ? &c->dlq : &c->j;
  int id = dest_id(c, dest, j);
  if (id < 0) {
    fprintf(stderr, "caduceus queue: no %s for '%s'\n", dead ? "dead letters" : "destination",
            dest);
    return 1;
  }
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  if (find_msg(c, j, dead ? c->dlqdir : c->jdir, id, seq, &rec)) {
    fprintf(stderr,
            "caduceus queue: %s has no message %llu%s (it may have been removed by retention)\n",
            dest, (unsigned long long)seq, dead ? " in its dead letters" : "");
    cad_buf_free(&rec.payload);
    return 1;
  }
  cad_str_t msg = {rec.payload.data, rec.payload.len}, reason = {"", 0};
  uint64_t orig = 0;
  if (dead) dlq_split(&rec.payload, &reason, &orig, &msg);
  char when[32];
  fmt_time(rec.time_ms, when, sizeof when);
  fprintf(stderr, "destination: %s\nsequence: %llu\n%s: %s\nbytes: %zu\n", dest,
          (unsigned long long)seq, dead ? "dead-lettered" : "queued", when, msg.len);
  if (dead) {
    /* Older dead letters were numbered apart from their queue sequence. */
    if (orig && orig != seq) fprintf(stderr, "queue sequence: %llu\n", (unsigned long long)orig);
    else if (!orig)
      fprintf(stderr, "queue sequence: none (the channel's routes failed before queueing)\n");
    fprintf(stderr, "reason: %.*s\n", (int)reason.len, reason.p);
  } else {
    show_fate(c, id, seq);
  }
  /* The message itself on stdout, byte for byte (pipe it to `caduceus parse -`). */
  fwrite(msg.p, 1, msg.len, stdout);
  if (msg.len && msg.p[msg.len - 1] != '\r' && msg.p[msg.len - 1] != '\n') fputc('\r', stdout);
  fputc('\n', stdout);
  cad_buf_free(&rec.payload);
  return 0;
}

static int take_lock(const char *data_dir, int *fd) {
  char err[4400];
  *fd = cad_store_lock(data_dir, err, sizeof err);
  if (*fd >= 0) return 0;
  if (*fd == -EWOULDBLOCK)
    fprintf(stderr,
            "caduceus queue: the engine is running on %s (it holds the lock: %s); stop it "
            "first, then run this again, or do it through the running engine's admin API: "
            "caduceus ctl requeue|purge DEST NUMBER|--all for dead letters (docs/admin.md)\n",
            data_dir, err);
  else fprintf(stderr, "caduceus queue: %s\n", err);
  return 1;
}

static int cmd_requeue(qctx_t *c, const char *dest, uint64_t seq, bool all) {
  int did = cad_journal_dest(&c->j, dest, false);
  int lid = c->have_dlq ? cad_journal_dest(&c->dlq, dest, false) : -1;
  if (did < 0 || lid < 0) {
    fprintf(stderr, "caduceus queue: no dead letters for '%s'\n", dest);
    return 1;
  }
  seqset_t gone;
  dlq_done_set(c, lid, &gone);
  cad_jreader_t r;
  if (cad_jreader_init(&r, c->dlqdir)) return 1;
  cad_jpos_t pos = cad_journal_begin(&c->dlq), end = cad_journal_end(&c->dlq);
  cad_jread_t rec;
  memset(&rec, 0, sizeof rec);
  int moved = 0, status = 0;
  while (cad_jreader_next(&r, &pos, end, lid, CAD_JREC_MSG, &rec) == 1) {
    if (seq_in(&gone, rec.seq) || (!all && rec.seq != seq)) continue;
    cad_str_t reason, msg;
    uint64_t orig;
    if (!dlq_split(&rec.payload, &reason, &orig, &msg)) continue;
    /* Back at the tail of the destination's FIFO, then marked as requeued.
     * Its new sequence is above every dead-letter number of the name too,
     * so the number it gets if it dies again is new. */
    uint64_t top = c->j.dests[did].last_seq;
    if (c->dlq.dests[lid].last_seq > top) top = c->dlq.dests[lid].last_seq;
    cad_jrec_t m = {CAD_JREC_MSG, (uint16_t)did, top + 1, msg.p, msg.len};
    int rc = cad_journal_write(&c->j, &m, 1, cad_now_ms());
    if (rc == 0) {
      cad_jrec_t done = {CAD_JREC_DONE, (uint16_t)lid, rec.seq, NULL, 0};
      rc = cad_journal_write(&c->dlq, &done, 1, cad_now_ms());
    }
    if (rc) {
      fprintf(stderr, "caduceus queue: requeue of dead letter %llu failed: %s\n",
              (unsigned long long)rec.seq, cad_strerror(rc));
      status = 1;
      break;
    }
    printf("requeued dead letter %llu of %s as message %llu\n", (unsigned long long)rec.seq, dest,
           (unsigned long long)m.seq);
    cad_cli_archive_note(c->jdir, "requeue", dest, (uint16_t)did, orig, m.seq, 1);
    moved++;
  }
  cad_buf_free(&rec.payload);
  cad_jreader_free(&r);
  free(gone.done);
  if (!moved && !status) {
    fprintf(stderr, "caduceus queue: no dead letter %s%llu for '%s'\n", all ? "" : "number ",
            all ? 0ull : (unsigned long long)seq, dest);
    return 1;
  }
  return status;
}

static int purge_one(qctx_t *c, int lid, uint64_t no) {
  cad_jrec_t done = {CAD_JREC_DONE, (uint16_t)lid, no, NULL, 0};
  return cad_journal_write(&c->dlq, &done, 1, cad_now_ms());
}

static int cmd_purge(qctx_t *c, const char *dest, bool dead) {
  if (dead) {
    int lid = c->have_dlq ? cad_journal_dest(&c->dlq, dest, false) : -1;
    if (lid < 0) {
      printf("no dead letters for %s\n", dest);
      return 0;
    }
    uint64_t n = dlq_live(c, dest, purge_one);
    printf("purged %llu dead letter(s) of %s\n", (unsigned long long)n, dest);
    if (n) cad_cli_archive_note(c->jdir, "purge_dead", dest, (uint16_t)lid, 0, 0, n);
    return 0;
  }
  int did = dest_id(c, dest, &c->j);
  if (did < 0) return 1;
  const cad_jdest_t *jd = &c->j.dests[did];
  uint64_t depth = jd->last_seq - jd->done_seq;
  cad_jrec_t p = {CAD_JREC_PURGE, (uint16_t)did, jd->last_seq, NULL, 0};
  int rc = cad_journal_write(&c->j, &p, 1, cad_now_ms());
  if (rc) {
    fprintf(stderr, "caduceus queue: purge failed: %s\n", cad_strerror(rc));
    return 1;
  }
  printf("purged %llu waiting message(s) of %s\n", (unsigned long long)depth, dest);
  cad_cli_archive_note(c->jdir, "purge", dest, (uint16_t)did, jd->last_seq, 0, depth);
  return 0;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus queue COMMAND DATA_DIR [DEST] [ARGS]\n"
          "\n"
          "Looks into the durable queue under DATA_DIR (the engine's data_dir).\n"
          "\n"
          "  stats DATA_DIR [DEST]           depth, delivered, dead letters and the age of\n"
          "                                  the oldest waiting message, per destination\n"
          "  list DATA_DIR DEST [--dead] [--limit N]\n"
          "                                  waiting messages (or dead letters, with the\n"
          "                                  reason): sequence, time, size, type, control id\n"
          "  show DATA_DIR DEST SEQ [--dead] one message: its state (queued, delivered, dead,\n"
          "                                  purged) and history on stderr, its bytes on\n"
          "                                  stdout (pipe to 'caduceus parse -')\n"
          "  requeue DATA_DIR DEST SEQ|--all move dead letters back to the end of DEST's queue\n"
          "                                  (a dead letter's number is its queue sequence, the\n"
          "                                  seq= of its log line; channel:NAME ones are routed\n"
          "                                  again)\n"
          "  purge DATA_DIR DEST [--dead]    drop every waiting message of DEST (or its dead\n"
          "                                  letters)\n"
          "\n"
          "stats, list and show only read, and are safe while the engine runs.\n"
          "requeue and purge change the queue: they refuse to run while the engine holds\n"
          "DATA_DIR locked; stop the engine first.\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int cad_cli_queue(int argc, char **argv) {
  static const struct option opts[] = {{"dead", no_argument, 0, 'd'},
                                       {"all", no_argument, 0, 'a'},
                                       {"limit", required_argument, 0, 'l'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  bool dead = false, all = false;
  uint64_t limit = 0;
  int o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "dal:h", opts, NULL)) != -1) {
    switch (o) {
      case 'd': dead = true; break;
      case 'a': all = true; break;
      case 'l': limit = strtoull(optarg, NULL, 10); break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  int npos = argc - optind;
  if (npos < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[optind], *data_dir = argv[optind + 1];
  const char *dest = npos > 2 ? argv[optind + 2] : NULL;
  bool changing = strcmp(cmd, "requeue") == 0 || strcmp(cmd, "purge") == 0;
  bool known =
      changing || strcmp(cmd, "stats") == 0 || strcmp(cmd, "list") == 0 || strcmp(cmd, "show") == 0;
  if (!known) {
    fprintf(stderr, "caduceus queue: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
  }
  if (strcmp(cmd, "stats") != 0 && !dest) {
    fprintf(stderr, "caduceus queue %s: which destination?\n", cmd);
    return 2;
  }
  uint64_t seq = 0;
  if (strcmp(cmd, "show") == 0 || (strcmp(cmd, "requeue") == 0 && !all)) {
    char *end = NULL;
    if (npos < 4 || (seq = strtoull(argv[optind + 3], &end, 10)) == 0 || *end) {
      fprintf(stderr, "caduceus queue %s: expected a message sequence number%s\n", cmd,
              strcmp(cmd, "requeue") == 0 ? " or --all" : "");
      return 2;
    }
  }
  int lockfd = -1;
  if (changing && take_lock(data_dir, &lockfd)) return 1;
  qctx_t c;
  memset(&c, 0, sizeof c);
  if (open_dirs(&c, data_dir, changing)) {
    if (lockfd >= 0) close(lockfd);
    return 1;
  }
  int rc;
  if (strcmp(cmd, "stats") == 0) rc = cmd_stats(&c, dest);
  else if (strcmp(cmd, "list") == 0) rc = cmd_list(&c, dest, dead, limit);
  else if (strcmp(cmd, "show") == 0) rc = cmd_show(&c, dest, seq, dead);
  else if (strcmp(cmd, "requeue") == 0) rc = cmd_requeue(&c, dest, seq, all);
  else rc = cmd_purge(&c, dest, dead);
  close_dirs(&c);
  if (lockfd >= 0) close(lockfd);
  return rc;
}
