/* cli_replay.c - `caduceus replay`: re-send message archives over MLLP at a
 * controlled rate, in constant memory, with a report and a resumable
 * checkpoint.
 *
 * The flow, all on one libuv loop:
 *
 *   sources (files, sorted directories, stdin; gzip detected by its magic)
 *     -> inflate in 256 KiB chunks -> hl7_stream (ER7, batches, MLLP)
 *     -> selection (--where, --type, --since/--until, --limit)
 *     -> pacing (--rate token schedule, or --keep-timing from MSH-7)
 *     -> N slots, each an MLLP sender (channels/mllp/mllp_sender.h) carrying one
 *        message at a time; a message goes to the next idle slot.
 *
 * Memory does not depend on the archive: one input chunk, one inflate
 * chunk, the splitter's current message, one copy per slot plus the message
 * waiting for its turn, and a window of at most WINDOW positions between the
 * oldest unfinished message and the newest sent (see the checkpoint below).
 *
 * Checkpoint (--resume FILE).  A message's position is (source index, byte
 * offset in the decompressed source).  The checkpoint says: every message
 * before position `next` is finished (accepted, refused with AE/AR and
 * reported, or failed and reported), plus a list of finished positions after
 * it (messages finished out of order by parallel connections; at most
 * WINDOW).  It is written as FILE.tmp, fsynced, renamed over FILE, and the
 * directory fsynced, every --checkpoint-every messages and at exit.  Between
 * two snapshots each finished message is also appended to FILE.log with one
 * write(2) (no fsync): a record that reached the kernel survives a killed
 * process (SIGKILL), so a resumed run skips it.  The log carries the
 * snapshot's generation, so records already folded into a newer snapshot
 * are never counted twice.  Only a power loss can lose log records: then
 * the messages finished since the last snapshot are sent again.
 *
 * In flight at an interruption: a message written to the socket whose ACK
 * had not been read (at most one per connection) is not finished, so a
 * resumed run sends it again; the receiver may then have it twice.  With
 * SIGINT/SIGTERM nothing new is sent and the messages in flight are given
 * their ACK timeout to finish before the checkpoint is written, so a
 * graceful stop leaves no duplicate.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include "cad_error.h"
#include "cli.h"
#include "cli_archive.h"
#include "cli_mllp.h"
#include "hl7.h"
#include "hl7_stream.h"
#include "mllp_sender.h"
#include "routes.h"

#define MAX_CONNECTIONS 256
#define DTM_HINT "an HL7 time like 20240301 or 202403011200"

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus replay --to HOST:PORT [options] SOURCE...\n"
          "\n"
          "Re-send the HL7 v2 messages of archives to an MLLP listener.  A SOURCE is a\n"
          "file, a directory (its regular files, one level, in name order) or - (stdin).\n"
          "Files may hold plain ER7 (\\r, \\n or \\r\\n; messages one after another or\n"
          "separated by blank lines), FHS/BHS batches or MLLP captures, and may be\n"
          "gzip-compressed (detected by content; concatenated members are read on).\n"
          "Memory stays the same whatever the size of the archive.\n"
          "\n"
          "Destination:\n"
          "%s"
          "  --connections N         N connections, each one message at a time; a message\n"
          "                          goes to the next idle connection, so with N > 1 the\n"
          "                          arrival order is not the archive order (default 1)\n"
          "  --retries N             resend after a connection error or a missing ACK,\n"
          "                          N times, then count the message failed (default 2)\n"
          "\n"
          "Selection:\n"
          "  --where EXPR            a route filter: 'MSH-9.1 = ORU and OBR-25 in (F,C)',\n"
          "                          = != ^= (prefix) ~ (regex) < <= > >= in exists empty,\n"
          "                          and, or, not, ( ); or a YAML condition '{path: ..}'\n"
          "  --type CODE[^TRIGGER]   MSH-9.1 (and MSH-9.2) must match; repeat for several\n"
          "  --since DTM, --until DTM  MSH-7 at or after / before (HL7 time, like 20240301\n"
          "                          or 202403011200+0100; without a zone read as UTC)\n"
          "  --limit N               send at most N selected messages\n"
          "\n"
          "Pacing (default: as fast as the ACKs come back):\n"
          "  --rate R                R messages per second (200, 200/s, 6000/min, 10/h)\n"
          "  --keep-timing           the original spacing, from MSH-7\n"
          "  --speed F               with --keep-timing: F times faster (10 or 10x)\n"
          "\n"
          "Output:\n"
          "  --report FILE           every message not accepted, as a replayable archive:\n"
          "                          a '# source=.. offset=.. control_id=.. ack=.. error=..'\n"
          "                          line, then the message\n"
          "  --resume FILE           checkpoint: continue an interrupted replay, sending\n"
          "                          each message once (see docs/replay.md)\n"
          "  --checkpoint-every N    snapshot the checkpoint every N messages (default 1000)\n"
          "  -q, --quiet             no progress line\n"
          "  -h, --help              show this help\n"
          "\n"
          "Exit status: 0 every selected message was accepted, 1 otherwise (or a source\n"
          "could not be read completely), 2 usage error, 3 interrupted (resumable).\n",
          cad_cli_mllp_help);
}

/* ---- positions and the checkpoint ---------------------------------------- */

typedef struct pos {
  uint32_t src;
  uint64_t off;
} pos_t;

static int pos_cmp(pos_t a, pos_t b) {
  if (a.src != b.src) return a.src < b.src ? -1 : 1;
  return a.off < b.off ? -1 : a.off > b.off ? 1 : 0;
}

static int pos_qcmp(const void *a, const void *b) {
  return pos_cmp(*(const pos_t *)a, *(const pos_t *)b);
}

typedef struct ring_ent {
  pos_t pos;
  bool done;
} ring_ent_t;

typedef struct counts {
  uint64_t finished, accepted, refused, failed;
} counts_t;

/* ---- the replay ---------------------------------------------------------- */

typedef struct replay replay_t;

typedef struct slot {
  replay_t *rp;
  cad_mllp_sender_t *s;
  uv_timer_t retry;
  cad_buf_t msg;
  pos_t pos;
  uint64_t ring_seq;
  int attempts;
  bool busy;
} slot_t;

struct replay {
  uv_loop_t loop;
  cad__archive_t rd;
  /* options */
  cad_route_cond_t *where;
  char **types;
  size_t ntypes;
  bool have_since, have_until;
  double since, until;
  uint64_t limit;
  double rate;
  bool keep_timing;
  double speed;
  int nconn, retries;
  bool quiet, progress;
  const char *report_path, *resume_path;
  uint64_t ckpt_every;
  /* state */
  slot_t *slots;
  cad_buf_t pending;
  bool have_pending, input_done, stopping, hard_stop, fatal;
  pos_t pending_pos;
  double pending_time;
  bool pending_has_time;
  uint64_t selected, skipped_done, filtered;
  counts_t c; /* this run and earlier runs (from the checkpoint) */
  counts_t c_prev;
  uint64_t sent_now; /* finished in this run */
  uint64_t t_start, next_due;
  double first_time;
  bool have_first_time;
  uv_timer_t pace, tick;
  uv_signal_t sigint, sigterm;
  cad_arena_t arena;
  FILE *report;
  /* checkpoint */
  ring_ent_t *ring;
  uint64_t ring_head, ring_tail, window;
  pos_t resume_next;  /* from the checkpoint: all before is done */
  pos_t *resume_done; /* sorted */
  size_t nresume_done;
  pos_t last_dispatched;
  bool any_dispatched;
  uint64_t gen;
  int log_fd;
  uint64_t since_snapshot;
  /* progress */
  uint64_t prog_last_t, prog_last_n;
  double prog_rate;
  bool prog_drawn;
};

static void pump(replay_t *rp);

static bool already_done(const replay_t *rp, pos_t p) {
  if (pos_cmp(p, rp->resume_next) < 0) return true;
  return rp->nresume_done &&
         bsearch(&p, rp->resume_done, rp->nresume_done, sizeof p, pos_qcmp) != NULL;
}

static bool type_matches(const replay_t *rp, const cad__archive_item_t *it) {
  cad_str_t t;
  cad__msh_field(it->p, it->len, 9, &t);
  char comp = it->len > 4 ? it->p[4] : '^';
  cad_str_t code, trig;
  if (!cad_hl7_piece(t, comp, 1, &code)) code.len = 0;
  if (!cad_hl7_piece(t, comp, 2, &trig)) trig.len = 0;
  for (size_t i = 0; i < rp->ntypes; i++) {
    const char *want = rp->types[i];
    const char *hat = strchr(want, '^');
    size_t cl = hat ? (size_t)(hat - want) : strlen(want);
    if (cl != code.len || memcmp(want, code.p, cl) != 0) continue;
    if (!hat) return true;
    size_t tl = strlen(hat + 1);
    if (tl == trig.len && memcmp(hat + 1, trig.p, tl) == 0) return true;
  }
  return false;
}

/* Read until a message is selected (copied into rp->pending), or the end. */
static int fetch(replay_t *rp) {
  cad__archive_item_t it;
  for (;;) {
    if (rp->limit && rp->selected >= rp->limit) return 0;
    int rc = cad__archive_next(&rp->rd, &it);
    if (rc <= 0) return rc;
    cad_str_t ts;
    double t = 0;
    bool has_t = cad__msh_field(it.p, it.len, 7, &ts) && cad__dtm_seconds(ts.p, ts.len, &t);
    bool ok = true;
    if (rp->ntypes && !type_matches(rp, &it)) ok = false;
    if (ok && rp->have_since && (!has_t || t < rp->since)) ok = false;
    if (ok && rp->have_until && (!has_t || t >= rp->until)) ok = false;
    if (ok && rp->where) {
      cad_hl7_msg_t m;
      cad_arena_reset(&rp->arena);
      if (cad_hl7_parse(&m, it.p, it.len, &rp->arena, NULL, NULL) != 0) {
        ok = false;
      } else {
        int h = cad_route_cond_eval(rp->where, &m, &rp->arena);
        if (h < 0) return h;
        ok = h == 1;
      }
    }
    if (!ok) {
      rp->filtered++;
      continue;
    }
    rp->selected++;
    pos_t p = {it.src, it.off};
    if (already_done(rp, p)) {
      rp->skipped_done++;
      continue;
    }
    cad_buf_clear(&rp->pending);
    if (cad_buf_append(&rp->pending, it.p, it.len) != 0) return CAD_E_NOMEM;
    rp->pending_pos = p;
    rp->pending_time = t;
    rp->pending_has_time = has_t;
    return 1;
  }
}

/* ---- checkpoint files ---------------------------------------------------- */

static int fsync_dir_of(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *(slash == dir ? slash + 1 : slash) = 0;
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

/* The position before which every message is finished. */
static pos_t watermark(const replay_t *rp) {
  if (rp->ring_tail != rp->ring_head) return rp->ring[rp->ring_tail % rp->window].pos;
  if (rp->any_dispatched) {
    pos_t p = rp->last_dispatched;
    p.off++;
    return pos_cmp(p, rp->resume_next) > 0 ? p : rp->resume_next;
  }
  return rp->resume_next;
}

static int write_snapshot(replay_t *rp) {
  if (!rp->resume_path) return 0;
  cad_buf_t b = CAD_BUF_INIT;
  pos_t wm = watermark(rp);
  uint64_t gen = rp->gen + 1;
  cad_buf_printf(&b, "caduceus-replay-checkpoint 1\ngen %llu\nsources %zu\n",
                 (unsigned long long)gen, rp->rd.nsrc);
  for (size_t i = 0; i < rp->rd.nsrc; i++) cad_buf_printf(&b, "source %zu %s\n", i, rp->rd.src[i]);
  cad_buf_printf(&b, "next %u %llu\n", wm.src, (unsigned long long)wm.off);
  for (size_t i = 0; i < rp->nresume_done; i++)
    if (pos_cmp(rp->resume_done[i], wm) >= 0)
      cad_buf_printf(&b, "done %u %llu\n", rp->resume_done[i].src,
                     (unsigned long long)rp->resume_done[i].off);
  for (uint64_t s = rp->ring_tail; s != rp->ring_head; s++) {
    const ring_ent_t *e = &rp->ring[s % rp->window];
    if (e->done) cad_buf_printf(&b, "done %u %llu\n", e->pos.src, (unsigned long long)e->pos.off);
  }
  cad_buf_printf(&b, "finished %llu accepted %llu refused %llu failed %llu\n",
                 (unsigned long long)rp->c.finished, (unsigned long long)rp->c.accepted,
                 (unsigned long long)rp->c.refused, (unsigned long long)rp->c.failed);
  uLong crc = crc32(0L, (const Bytef *)b.data, (uInt)b.len);
  cad_buf_printf(&b, "crc %08lx\n", (unsigned long)crc);
  if (!b.data) return CAD_E_NOMEM;
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", rp->resume_path);
  int rc = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) rc = -errno;
  if (!rc) {
    size_t off = 0;
    while (off < b.len) {
      ssize_t w = write(fd, b.data + off, b.len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        rc = -errno;
        break;
      }
      off += (size_t)w;
    }
    if (!rc && fsync(fd) != 0) rc = -errno;
    close(fd);
  }
  if (!rc && rename(tmp, rp->resume_path) != 0) rc = -errno;
  if (!rc) rc = fsync_dir_of(rp->resume_path);
  cad_buf_free(&b);
  if (rc) {
    fprintf(stderr, "caduceus replay: cannot write the checkpoint %s: %s\n", rp->resume_path,
            cad_strerror(rc));
    return rc;
  }
  rp->gen = gen;
  /* A fresh log for this generation (records of the old one are in the
   * snapshot now). */
  if (rp->log_fd >= 0 && ftruncate(rp->log_fd, 0) == 0) {
    char hdr[64];
    int n = snprintf(hdr, sizeof hdr, "gen %llu\n", (unsigned long long)gen);
    if (pwrite(rp->log_fd, hdr, (size_t)n, 0) != n) rc = CAD_E_IO;
  }
  rp->since_snapshot = 0;
  return rc;
}

static void log_finished(replay_t *rp, pos_t p, char kind) {
  if (rp->log_fd < 0) return;
  char line[96], body[64];
  int bn = snprintf(body, sizeof body, "%c %u %llu", kind, p.src, (unsigned long long)p.off);
  uLong crc = crc32(0L, (const Bytef *)body, (uInt)bn);
  int n = snprintf(line, sizeof line, "%s %08lx\n", body, (unsigned long)crc);
  if (write(rp->log_fd, line, (size_t)n) != n)
    fprintf(stderr, "caduceus replay: cannot append to the checkpoint log: %s\n", strerror(errno));
}

static int add_resume_done(replay_t *rp, size_t *cap, pos_t p) {
  if (rp->nresume_done == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    pos_t *n = realloc(rp->resume_done, nc * sizeof *n);
    if (!n) return CAD_E_NOMEM;
    rp->resume_done = n;
    *cap = nc;
  }
  rp->resume_done[rp->nresume_done++] = p;
  return 0;
}

/* Load FILE (when it exists) and the records of FILE.log of the same
 * generation.  Returns 0, 1 (no checkpoint yet) or -1 (printed). */
static int load_checkpoint(replay_t *rp) {
  FILE *f = fopen(rp->resume_path, "rb");
  if (!f) {
    if (errno == ENOENT) return 1;
    fprintf(stderr, "caduceus replay: %s: %s\n", rp->resume_path, strerror(errno));
    return -1;
  }
  char line[PATH_MAX + 64];
  uLong crc = crc32(0L, Z_NULL, 0);
  bool crc_ok = false, bad = false;
  size_t nsrc = 0, cap = 0, srcs_seen = 0;
  unsigned long long a, b2, c2, d2;
  unsigned u;
  while (fgets(line, sizeof line, f)) {
    size_t l = strlen(line);
    if (strncmp(line, "crc ", 4) == 0) {
      unsigned long want = strtoul(line + 4, NULL, 16);
      crc_ok = want == crc;
      break;
    }
    crc = crc32(crc, (const Bytef *)line, (uInt)l);
    if (l && line[l - 1] == '\n') line[--l] = 0;
    if (sscanf(line, "gen %llu", &a) == 1) {
      rp->gen = a;
    } else if (sscanf(line, "sources %zu", &nsrc) == 1) {
      if (nsrc != rp->rd.nsrc) bad = true;
    } else if (strncmp(line, "source ", 7) == 0) {
      char *sp = strchr(line + 7, ' ');
      size_t idx = strtoul(line + 7, NULL, 10);
      if (!sp || idx >= rp->rd.nsrc || strcmp(sp + 1, rp->rd.src[idx]) != 0) bad = true;
      srcs_seen++;
    } else if (sscanf(line, "next %u %llu", &u, &a) == 2) {
      rp->resume_next.src = u;
      rp->resume_next.off = a;
    } else if (sscanf(line, "done %u %llu", &u, &a) == 2) {
      if (add_resume_done(rp, &cap, (pos_t){u, a})) bad = true;
    } else if (sscanf(line, "finished %llu accepted %llu refused %llu failed %llu", &a, &b2, &c2,
                      &d2) == 4) {
      rp->c.finished = a;
      rp->c.accepted = b2;
      rp->c.refused = c2;
      rp->c.failed = d2;
    }
  }
  fclose(f);
  if (!crc_ok) {
    fprintf(stderr, "caduceus replay: %s: not a valid checkpoint (damaged or incomplete)\n",
            rp->resume_path);
    return -1;
  }
  if (bad || srcs_seen != rp->rd.nsrc) {
    fprintf(stderr,
            "caduceus replay: %s: the checkpoint is for other sources; give the same SOURCE "
            "arguments (and directory contents) as the replay it comes from\n",
            rp->resume_path);
    return -1;
  }
  /* The log of this generation: messages finished after the snapshot. */
  char logp[PATH_MAX];
  snprintf(logp, sizeof logp, "%s.log", rp->resume_path);
  f = fopen(logp, "rb");
  if (f) {
    bool gen_ok = false;
    if (fgets(line, sizeof line, f) && sscanf(line, "gen %llu", &a) == 1 && a == rp->gen)
      gen_ok = true;
    while (gen_ok && fgets(line, sizeof line, f)) {
      char kind;
      unsigned long want;
      size_t l = strlen(line);
      if (!l || line[l - 1] != '\n') break; /* torn last line */
      char *sp = strrchr(line, ' ');
      if (!sp) break;
      *sp = 0;
      want = strtoul(sp + 1, NULL, 16);
      if (crc32(0L, (const Bytef *)line, (uInt)strlen(line)) != want) break;
      if (sscanf(line, "%c %u %llu", &kind, &u, &a) != 3) break;
      pos_t p = {u, a};
      if (pos_cmp(p, rp->resume_next) < 0) continue;
      if (add_resume_done(rp, &cap, p)) break;
      rp->c.finished++;
      if (kind == 'A') rp->c.accepted++;
      else if (kind == 'R') rp->c.refused++;
      else rp->c.failed++;
    }
    fclose(f);
  }
  if (rp->nresume_done) qsort(rp->resume_done, rp->nresume_done, sizeof *rp->resume_done, pos_qcmp);
  rp->c_prev = rp->c;
  return 0;
}

/* ---- report -------------------------------------------------------------- */

static void report(replay_t *rp, const slot_t *sl, const char *code, const char *why) {
  if (!rp->report) return;
  cad_str_t ctl;
  cad__msh_field(sl->msg.data, sl->msg.len, 10, &ctl);
  char cbuf[80];
  size_t cl = ctl.len < sizeof cbuf - 1 ? ctl.len : sizeof cbuf - 1;
  for (size_t i = 0; i < cl; i++) {
    unsigned char ch = (unsigned char)ctl.p[i];
    cbuf[i] = (ch < 0x21 || ch == 0x7f) ? '_' : (char)ch;
  }
  cbuf[cl] = 0;
  fprintf(rp->report, "# source=%s offset=%llu control_id=%s ack=%s error=\"",
          rp->rd.src[sl->pos.src], (unsigned long long)sl->pos.off, cl ? cbuf : "-",
          code[0] ? code : "-");
  for (const char *q = why; *q; q++) {
    unsigned char ch = (unsigned char)*q;
    if (ch == '"' || ch == '\\') fputc('\\', rp->report);
    fputc(ch < 0x20 ? ' ' : ch, rp->report);
  }
  fputs("\"\n", rp->report);
  /* The message with \r terminators, ended by a newline: the report is an
   * archive that `caduceus replay` reads again. */
  for (size_t i = 0; i < sl->msg.len; i++) {
    char ch = sl->msg.data[i];
    if (ch == '\n') {
      if (i > 0 && sl->msg.data[i - 1] == '\r') continue;
      ch = '\r';
    }
    fputc(ch, rp->report);
  }
  fputs("\r\n", rp->report);
  fflush(rp->report);
}

/* ---- progress ------------------------------------------------------------ */

static void fmt_eta(char *b, size_t cap, double s) {
  if (s < 0 || s > 360000 || s != s) snprintf(b, cap, "?");
  else if (s >= 3600) snprintf(b, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
  else if (s >= 60) snprintf(b, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(b, cap, "%ds", (int)s);
}

static void draw_progress(replay_t *rp) {
  uint64_t now = uv_hrtime();
  double dt = (double)(now - rp->prog_last_t) / 1e9;
  if (dt > 0) {
    double inst = (double)(rp->sent_now - rp->prog_last_n) / dt;
    rp->prog_rate = rp->prog_last_t ? 0.5 * rp->prog_rate + 0.5 * inst : inst;
  }
  rp->prog_last_t = now;
  rp->prog_last_n = rp->sent_now;
  char eta[64] = "";
  double frac = -1;
  if (rp->limit) frac = (double)rp->selected / (double)rp->limit;
  else if (rp->rd.bytes_total) frac = (double)rp->rd.bytes_read / (double)rp->rd.bytes_total;
  if (frac > 0) {
    double el = (double)(now - rp->t_start) / 1e9;
    char e[24];
    fmt_eta(e, sizeof e, el / frac - el);
    snprintf(eta, sizeof eta, " %3.0f%% ETA %s", frac > 1 ? 100.0 : frac * 100.0, e);
  }
  fprintf(stderr, "\r\033[K%llu sent %.0f msg/s%s  %llu not accepted  %llu failed%s",
          (unsigned long long)rp->sent_now, rp->prog_rate, eta,
          (unsigned long long)(rp->c.refused - rp->c_prev.refused),
          (unsigned long long)(rp->c.failed - rp->c_prev.failed),
          rp->stopping ? "  (stopping)" : "");
  rp->prog_drawn = true;
}

static void on_tick(uv_timer_t *t) { draw_progress(t->data); }

/* ---- sending ------------------------------------------------------------- */

static void finish_msg(replay_t *rp, slot_t *sl, char kind) {
  rp->ring[sl->ring_seq % rp->window].done = true;
  while (rp->ring_tail != rp->ring_head && rp->ring[rp->ring_tail % rp->window].done)
    rp->ring_tail++;
  rp->c.finished++;
  rp->sent_now++;
  if (kind == 'A') rp->c.accepted++;
  else if (kind == 'R') rp->c.refused++;
  else rp->c.failed++;
  log_finished(rp, sl->pos, kind);
  sl->busy = false;
  if (rp->resume_path && ++rp->since_snapshot >= rp->ckpt_every) write_snapshot(rp);
}

static void deliver(slot_t *sl);
static void on_retry(uv_timer_t *t);

static void on_sent(void *ctx, int outcome, const char *detail) {
  slot_t *sl = ctx;
  replay_t *rp = sl->rp;
  const cad_mllp_result_t *r = cad_mllp_sender_last(sl->s);
  if (outcome == CAD_MLLP_SEND_OK) {
    finish_msg(rp, sl, 'A');
  } else if (outcome == CAD_MLLP_SEND_FAIL) {
    report(rp, sl, r->ack_code, r->err_text[0] ? r->err_text : detail);
    finish_msg(rp, sl, r->ack_code[0] ? 'R' : 'F');
  } else if (rp->hard_stop || rp->stopping) {
    /* shutting down: not finished, the checkpoint keeps it for a resume */
    sl->busy = false;
  } else if (sl->attempts <= rp->retries) {
    uint64_t backoff = 250ull << (sl->attempts - 1 < 5 ? sl->attempts - 1 : 5);
    uv_timer_start(&sl->retry, on_retry, backoff, 0);
    return;
  } else {
    report(rp, sl, "", detail);
    finish_msg(rp, sl, 'F');
  }
  pump(rp);
}

static void on_retry(uv_timer_t *t) {
  slot_t *sl = t->data;
  if (sl->rp->stopping) {
    sl->busy = false;
    pump(sl->rp);
    return;
  }
  deliver(sl);
}

static void deliver(slot_t *sl) {
  sl->attempts++;
  int rc = cad_mllp_sender_deliver(sl->s, sl->msg.data, sl->msg.len, sl->ring_seq, on_sent, sl);
  if (rc != 0) {
    report(sl->rp, sl, "", cad_strerror(rc));
    finish_msg(sl->rp, sl, 'F');
  }
}

static void on_pace(uv_timer_t *t) { pump(t->data); }

static bool all_idle(const replay_t *rp) {
  for (int i = 0; i < rp->nconn; i++)
    if (rp->slots[i].busy) return false;
  return true;
}

static void pump(replay_t *rp) {
  while (!rp->stopping && !rp->fatal) {
    slot_t *sl = NULL;
    for (int i = 0; i < rp->nconn && !sl; i++)
      if (!rp->slots[i].busy) sl = &rp->slots[i];
    if (!sl) break;
    if (rp->ring_head - rp->ring_tail >= rp->window) break; /* window full */
    if (!rp->have_pending) {
      if (rp->input_done) break;
      int rc = fetch(rp);
      if (rc < 0) {
        fprintf(stderr, "caduceus replay: %s\n", cad_strerror(rc));
        rp->fatal = true;
        break;
      }
      if (rc == 0) {
        rp->input_done = true;
        break;
      }
      rp->have_pending = true;
    }
    uint64_t now = uv_hrtime();
    uint64_t due = now;
    if (rp->keep_timing && rp->pending_has_time) {
      if (!rp->have_first_time) {
        rp->have_first_time = true;
        rp->first_time = rp->pending_time;
        rp->t_start = now;
      }
      double d = (rp->pending_time - rp->first_time) / rp->speed;
      due = d > 0 ? rp->t_start + (uint64_t)(d * 1e9) : rp->t_start;
    } else if (rp->rate > 0) {
      if (!rp->next_due) rp->next_due = now;
      /* a stall (slow sink) is not made up by a burst beyond 100 ms */
      uint64_t floor_t = now > 100000000ull ? now - 100000000ull : 0;
      if (rp->next_due < floor_t) rp->next_due = floor_t;
      due = rp->next_due;
    }
    if (due > now) {
      uint64_t ms = (due - now + 999999) / 1000000;
      uv_timer_start(&rp->pace, on_pace, ms, 0);
      break;
    }
    if (rp->rate > 0 && !rp->keep_timing) rp->next_due += (uint64_t)(1e9 / rp->rate);
    /* hand the pending message to the slot (swap buffers: no copy) */
    cad_buf_t tmp = sl->msg;
    sl->msg = rp->pending;
    rp->pending = tmp;
    cad_buf_clear(&rp->pending);
    rp->have_pending = false;
    sl->pos = rp->pending_pos;
    sl->ring_seq = rp->ring_head;
    rp->ring[rp->ring_head % rp->window] = (ring_ent_t){sl->pos, false};
    rp->ring_head++;
    rp->last_dispatched = sl->pos;
    rp->any_dispatched = true;
    sl->attempts = 0;
    sl->busy = true;
    deliver(sl);
  }
  if ((rp->input_done || rp->stopping || rp->fatal) && all_idle(rp)) uv_stop(&rp->loop);
}

static void on_signal(uv_signal_t *h, int sig) {
  replay_t *rp = h->data;
  (void)sig;
  if (rp->stopping) {
    rp->hard_stop = true;
    uv_stop(&rp->loop);
    return;
  }
  rp->stopping = true;
  uv_timer_stop(&rp->pace);
  if (all_idle(rp)) uv_stop(&rp->loop);
}

/* ---- options --------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t *out, uint64_t max) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno || v > max || s[0] == '-') return false;
  *out = v;
  return true;
}

static bool parse_rate(const char *s, double *out) {
  char *end = NULL;
  double v = strtod(s, &end);
  if (end == s || !(v > 0) || v > 1e7) return false;
  double per = 1;
  if (*end == 0 || strcmp(end, "/s") == 0) per = 1;
  else if (strcmp(end, "/m") == 0 || strcmp(end, "/min") == 0) per = 60;
  else if (strcmp(end, "/h") == 0) per = 3600;
  else return false;
  *out = v / per;
  return true;
}

static void closed_cb(uv_handle_t *h) { (void)h; }

typedef struct close_wait {
  int left;
} close_wait_t;

static void on_sender_closed(void *arg) { ((close_wait_t *)arg)->left--; }

int cad_cli_replay(int argc, char **argv) {
  replay_t *rp = calloc(1, sizeof *rp);
  const char **args = calloc((size_t)argc + 1, sizeof *args);
  if (!rp || !args) {
    free(rp);
    free(args);
    return 1;
  }
  size_t nargs = 0;
  cad_cli_mllp_t mo;
  cad_cli_mllp_init(&mo);
  rp->nconn = 1;
  rp->retries = 2;
  rp->speed = 1;
  rp->ckpt_every = 1000;
  rp->log_fd = -1;
  const char *where = NULL;
  int status = 2;
  bool opts = true;
  rp->types = calloc((size_t)argc + 1, sizeof *rp->types);
  if (!rp->types) goto out;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int m = opts ? cad_cli_mllp_arg(&mo, "replay", argc, argv, &i) : 0;
    if (m < 0) goto out;
    if (m > 0) continue;
    if (!opts || a[0] != '-' || !a[1]) {
      args[nargs++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      opts = false;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      status = 0;
      goto out;
    }
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      rp->quiet = true;
      continue;
    }
    if (strcmp(a, "--keep-timing") == 0) {
      rp->keep_timing = true;
      continue;
    }
    /* options with a value */
    static const char *const valued[] = {"--where",  "--type",   "--since",   "--until",
                                         "--limit",  "--rate",   "--speed",   "--connections",
                                         "--report", "--resume", "--retries", "--checkpoint-every"};
    bool known = false;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
      if (strcmp(a, valued[k]) == 0) known = true;
    if (!known) {
      fprintf(stderr, "caduceus replay: unknown option '%s'\n", a);
      usage(stderr);
      goto out;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "caduceus replay: %s needs a value\n", a);
      goto out;
    }
    const char *v = argv[++i];
    uint64_t u;
    const char *bad = NULL;
    if (strcmp(a, "--where") == 0) where = v;
    else if (strcmp(a, "--type") == 0) {
      if (!*v || strchr(v, '^') != strrchr(v, '^')) bad = "CODE or CODE^TRIGGER, like ADT^A01";
      else rp->types[rp->ntypes++] = (char *)v;
    } else if (strcmp(a, "--since") == 0) {
      if (!cad__dtm_seconds(v, strlen(v), &rp->since)) bad = DTM_HINT;
      rp->have_since = true;
    } else if (strcmp(a, "--until") == 0) {
      if (!cad__dtm_seconds(v, strlen(v), &rp->until)) bad = DTM_HINT;
      rp->have_until = true;
    } else if (strcmp(a, "--limit") == 0) {
      if (!parse_u64(v, &u, UINT64_MAX / 2) || u == 0) bad = "a count of at least 1";
      rp->limit = u;
    } else if (strcmp(a, "--rate") == 0) {
      if (!parse_rate(v, &rp->rate)) bad = "a rate like 200, 200/s, 6000/min or 10/h";
    } else if (strcmp(a, "--speed") == 0) {
      char *end = NULL;
      rp->speed = strtod(v, &end);
      if (end == v || (*end && strcmp(end, "x") != 0) || !(rp->speed > 0) || rp->speed > 1e6)
        bad = "a factor like 10 or 10x";
    } else if (strcmp(a, "--connections") == 0) {
      if (!parse_u64(v, &u, MAX_CONNECTIONS) || u == 0) bad = "a number from 1 to 256";
      rp->nconn = (int)u;
    } else if (strcmp(a, "--retries") == 0) {
      if (!parse_u64(v, &u, 100)) bad = "a number from 0 to 100";
      rp->retries = (int)u;
    } else if (strcmp(a, "--checkpoint-every") == 0) {
      if (!parse_u64(v, &u, 1000000000) || u == 0) bad = "a count of at least 1";
      rp->ckpt_every = u;
    } else if (strcmp(a, "--report") == 0) rp->report_path = v;
    else if (strcmp(a, "--resume") == 0) rp->resume_path = v;
    if (bad) {
      fprintf(stderr, "caduceus replay: %s: expected %s\n", a, bad);
      goto out;
    }
  }
  const char *why = cad_cli_mllp_check(&mo);
  if (!why && nargs == 0) why = "no input: give one or more files, directories, or - for stdin";
  if (!why && rp->rate > 0 && rp->keep_timing) why = "--rate and --keep-timing exclude each other";
  if (!why && rp->speed != 1 && !rp->keep_timing) why = "--speed goes with --keep-timing";
  if (!why && rp->have_since && rp->have_until && rp->until <= rp->since)
    why = "--until must be after --since";
  if (why) {
    fprintf(stderr, "caduceus replay: %s\n", why);
    usage(stderr);
    goto out;
  }
  if (where) {
    cad_buf_t errs = CAD_BUF_INIT;
    int rc = cad_route_cond_parse(where, NULL, &rp->where, &errs);
    if (rc) {
      const char *e = cad_buf_cstr(&errs);
      fprintf(stderr, "caduceus replay: --where: %s\n%s", cad_strerror(rc), e ? e : "");
      cad_buf_free(&errs);
      goto out;
    }
    cad_buf_free(&errs);
  }

  status = 1;
  if (cad__archive_init(&rp->rd, "replay") != 0 ||
      cad__archive_add_sources(&rp->rd, args, nargs) != 0)
    goto out;
  if (rp->rd.nsrc == 0) {
    fprintf(stderr, "caduceus replay: no files in the given directories\n");
    goto out;
  }
  rp->window = (uint64_t)rp->nconn * 16 < 256 ? 256 : (uint64_t)rp->nconn * 16;
  rp->ring = calloc(rp->window, sizeof *rp->ring);
  rp->slots = calloc((size_t)rp->nconn, sizeof *rp->slots);
  if (!rp->ring || !rp->slots) goto out;
  bool resuming = false;
  if (rp->resume_path) {
    int lr = load_checkpoint(rp);
    if (lr < 0) goto out;
    resuming = lr == 0;
    char logp[PATH_MAX];
    snprintf(logp, sizeof logp, "%s.log", rp->resume_path);
    rp->log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (rp->log_fd < 0) {
      fprintf(stderr, "caduceus replay: %s: %s\n", logp, strerror(errno));
      goto out;
    }
    /* fold the old log into a snapshot at once: from here on, the log is ours */
    if (write_snapshot(rp) != 0) goto out;
    if (resuming)
      fprintf(stderr, "caduceus replay: resuming: %llu messages finished before\n",
              (unsigned long long)rp->c.finished);
  }
  if (rp->report_path) {
    rp->report = fopen(rp->report_path, resuming ? "ab" : "wb");
    if (!rp->report) {
      fprintf(stderr, "caduceus replay: %s: %s\n", rp->report_path, strerror(errno));
      goto out;
    }
    if (!resuming || ftell(rp->report) == 0)
      fputs(
          "# caduceus replay report: messages not accepted; this file is itself an archive "
          "that caduceus replay can send again\n",
          rp->report);
  }
  cad_tls_ctx_t *ctx = NULL;
  char err[300];
  if (cad_cli_mllp_tls(&mo, &ctx, err, sizeof err) != 0) {
    fprintf(stderr, "caduceus replay: TLS: %s\n", err);
    goto out;
  }
  uv_loop_init(&rp->loop);
  cad_arena_init(&rp->arena, 65536, (size_t)64 << 20);
  cad_mllp_sender_opts_t so;
  cad_cli_mllp_sender_opts(&mo, ctx, &so);
  int made = 0;
  for (; made < rp->nconn; made++) {
    slot_t *sl = &rp->slots[made];
    sl->rp = rp;
    if (cad_mllp_sender_new(&rp->loop, &so, &sl->s, err, sizeof err) != 0) {
      fprintf(stderr, "caduceus replay: %s\n", err);
      rp->fatal = true;
      break;
    }
    uv_timer_init(&rp->loop, &sl->retry);
    sl->retry.data = sl;
  }
  uv_timer_init(&rp->loop, &rp->pace);
  rp->pace.data = rp;
  uv_timer_init(&rp->loop, &rp->tick);
  rp->tick.data = rp;
  uv_signal_init(&rp->loop, &rp->sigint);
  uv_signal_init(&rp->loop, &rp->sigterm);
  rp->sigint.data = rp->sigterm.data = rp;
  uv_signal_start(&rp->sigint, on_signal, SIGINT);
  uv_signal_start(&rp->sigterm, on_signal, SIGTERM);
  rp->progress = !rp->quiet && isatty(2);
  if (rp->progress) uv_timer_start(&rp->tick, on_tick, 250, 250);
  rp->t_start = uv_hrtime();
  if (!rp->fatal) {
    pump(rp);
    if (!(rp->input_done || rp->stopping || rp->fatal) || !all_idle(rp))
      uv_run(&rp->loop, UV_RUN_DEFAULT);
  }
  double elapsed = (double)(uv_hrtime() - rp->t_start) / 1e9;
  if (rp->progress) {
    draw_progress(rp);
    fputc('\n', stderr);
  }
  /* close everything; a message still in flight (hard stop) ends as RETRY */
  close_wait_t cw = {0};
  for (int i = 0; i < made; i++) {
    cw.left++;
    cad_mllp_sender_close(rp->slots[i].s, on_sender_closed, &cw);
    uv_close((uv_handle_t *)&rp->slots[i].retry, closed_cb);
  }
  uv_close((uv_handle_t *)&rp->pace, closed_cb);
  uv_close((uv_handle_t *)&rp->tick, closed_cb);
  uv_close((uv_handle_t *)&rp->sigint, closed_cb);
  uv_close((uv_handle_t *)&rp->sigterm, closed_cb);
  /* a uv_stop() still pending makes the first run return at once */
  while (uv_run(&rp->loop, UV_RUN_DEFAULT) != 0) {
  }
  if (uv_loop_close(&rp->loop) != 0) fprintf(stderr, "caduceus replay: handles left open\n");
  cad_tls_ctx_unref(ctx);
  if (rp->resume_path) write_snapshot(rp);
  bool interrupted = rp->stopping || rp->hard_stop;
  printf(
      "replay: %llu read, %llu selected, %llu filtered out, %llu already done (resume); "
      "%llu finished: %llu accepted, %llu not accepted (AE/AR), %llu failed; "
      "%.2f s, %.1f msg/s%s\n",
      (unsigned long long)rp->rd.messages, (unsigned long long)rp->selected,
      (unsigned long long)rp->filtered, (unsigned long long)rp->skipped_done,
      (unsigned long long)rp->sent_now, (unsigned long long)(rp->c.accepted - rp->c_prev.accepted),
      (unsigned long long)(rp->c.refused - rp->c_prev.refused),
      (unsigned long long)(rp->c.failed - rp->c_prev.failed), elapsed,
      elapsed > 0 ? (double)rp->sent_now / elapsed : 0.0, interrupted ? " (interrupted)" : "");
  if (rp->resume_path)
    printf(
        "replay: checkpoint %s: %llu finished in all runs (%llu accepted, %llu not "
        "accepted, %llu failed)%s\n",
        rp->resume_path, (unsigned long long)rp->c.finished, (unsigned long long)rp->c.accepted,
        (unsigned long long)rp->c.refused, (unsigned long long)rp->c.failed,
        interrupted ? "; run again with the same arguments to continue" : "");
  fflush(stdout);
  if (interrupted) status = 3;
  else if (rp->fatal || rp->rd.read_errors || rp->c.refused != rp->c_prev.refused ||
           rp->c.failed != rp->c_prev.failed ||
           (rp->sent_now == 0 && rp->skipped_done == 0 && rp->selected == 0 &&
            rp->rd.messages == 0))
    status = 1;
  else status = 0;
out:
  for (int i = 0; rp->slots && i < rp->nconn; i++) cad_buf_free(&rp->slots[i].msg);
  free(rp->slots);
  cad_buf_free(&rp->pending);
  cad_arena_free(&rp->arena);
  if (rp->report) fclose(rp->report);
  if (rp->log_fd >= 0) close(rp->log_fd);
  cad__archive_free(&rp->rd);
  free(rp->ring);
  free(rp->resume_done);
  cad_route_cond_free(rp->where);
  free(rp->types);
  free(rp);
  free(args);
  return status;
}
