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
#include "cli_replay_int.h"
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
  cad__replay_log_finished(rp, sl->pos, kind);
  sl->busy = false;
  if (rp->resume_path && ++rp->since_snapshot >= rp->ckpt_every) cad__replay_write_snapshot(rp);
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

/* One option with a value: 0, or 2 (usage error, printed). */
static int set_valued(replay_t *rp, const char *a, const char *v, const char **where) {
  uint64_t u;
  const char *bad = NULL;
  if (strcmp(a, "--where") == 0) *where = v;
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
  if (!bad) return 0;
  fprintf(stderr, "caduceus replay: %s: expected %s\n", a, bad);
  return 2;
}

/* The options that go together, and --where compiled.  0 or 2 (printed). */
static int check_options(replay_t *rp, cad_cli_mllp_t *mo, size_t nargs, const char *where) {
  const char *why = cad_cli_mllp_check(mo);
  if (!why && nargs == 0) why = "no input: give one or more files, directories, or - for stdin";
  if (!why && rp->rate > 0 && rp->keep_timing) why = "--rate and --keep-timing exclude each other";
  if (!why && rp->speed != 1 && !rp->keep_timing) why = "--speed goes with --keep-timing";
  if (!why && rp->have_since && rp->have_until && rp->until <= rp->since)
    why = "--until must be after --since";
  if (why) {
    fprintf(stderr, "caduceus replay: %s\n", why);
    usage(stderr);
    return 2;
  }
  if (!where) return 0;
  cad_buf_t errs = CAD_BUF_INIT;
  int rc = cad_route_cond_parse(where, NULL, &rp->where, &errs);
  if (rc) {
    const char *e = cad_buf_cstr(&errs);
    fprintf(stderr, "caduceus replay: --where: %s\n%s", cad_strerror(rc), e ? e : "");
  }
  cad_buf_free(&errs);
  return rc ? 2 : 0;
}

/* The command line into rp, mo and args.  Returns -1 to go on, or the exit
 * status (0 after --help, 2 on a usage error, printed). */
static int parse_options(replay_t *rp, cad_cli_mllp_t *mo, int argc, char **argv, const char **args,
                         size_t *nargs) {
  static const char *const valued[] = {"--where",  "--type",   "--since",   "--until",
                                       "--limit",  "--rate",   "--speed",   "--connections",
                                       "--report", "--resume", "--retries", "--checkpoint-every"};
  const char *where = NULL;
  bool opts = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int m = opts ? cad_cli_mllp_arg(mo, "replay", argc, argv, &i) : 0;
    if (m < 0) return 2;
    if (m > 0) continue;
    if (!opts || a[0] != '-' || !a[1]) {
      args[(*nargs)++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      opts = false;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      rp->quiet = true;
      continue;
    }
    if (strcmp(a, "--keep-timing") == 0) {
      rp->keep_timing = true;
      continue;
    }
    bool known = false;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
      if (strcmp(a, valued[k]) == 0) known = true;
    if (!known) {
      fprintf(stderr, "caduceus replay: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "caduceus replay: %s needs a value\n", a);
      return 2;
    }
    if (set_valued(rp, a, argv[++i], &where) != 0) return 2;
  }
  int rc = check_options(rp, mo, *nargs, where);
  return rc ? rc : -1;
}

/* Sources, the window, the checkpoint and the report file.  0 or -1
 * (printed). */
static int setup_files(replay_t *rp, const char **args, size_t nargs) {
  if (cad__archive_init(&rp->rd, "replay") != 0 ||
      cad__archive_add_sources(&rp->rd, args, nargs) != 0)
    return -1;
  if (rp->rd.nsrc == 0) {
    fprintf(stderr, "caduceus replay: no files in the given directories\n");
    return -1;
  }
  rp->window = (uint64_t)rp->nconn * 16 < 256 ? 256 : (uint64_t)rp->nconn * 16;
  rp->ring = calloc(rp->window, sizeof *rp->ring);
  rp->slots = calloc((size_t)rp->nconn, sizeof *rp->slots);
  if (!rp->ring || !rp->slots) return -1;
  bool resuming = false;
  if (rp->resume_path) {
    int lr = cad__replay_load_checkpoint(rp);
    if (lr < 0) return -1;
    resuming = lr == 0;
    char logp[PATH_MAX];
    snprintf(logp, sizeof logp, "%s.log", rp->resume_path);
    rp->log_fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (rp->log_fd < 0) {
      fprintf(stderr, "caduceus replay: %s: %s\n", logp, strerror(errno));
      return -1;
    }
    /* fold the old log into a snapshot at once: from here on, the log is ours */
    if (cad__replay_write_snapshot(rp) != 0) return -1;
    if (resuming)
      fprintf(stderr, "caduceus replay: resuming: %llu messages finished before\n",
              (unsigned long long)rp->c.finished);
  }
  if (!rp->report_path) return 0;
  rp->report = fopen(rp->report_path, resuming ? "ab" : "wb");
  if (!rp->report) {
    fprintf(stderr, "caduceus replay: %s: %s\n", rp->report_path, strerror(errno));
    return -1;
  }
  if (!resuming || ftell(rp->report) == 0)
    fputs(
        "# caduceus replay report: messages not accepted; this file is itself an archive "
        "that caduceus replay can send again\n",
        rp->report);
  return 0;
}

/* The loop, one sender per slot, the timers and the signals.  Returns how
 * many senders were made (rp->fatal is set when not all). */
static int setup_loop(replay_t *rp, const cad_cli_mllp_t *mo, cad_tls_ctx_t *ctx) {
  char err[300];
  uv_loop_init(&rp->loop);
  cad_arena_init(&rp->arena, 65536, (size_t)64 << 20);
  cad_mllp_sender_opts_t so;
  cad_cli_mllp_sender_opts(mo, ctx, &so);
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
  return made;
}

/* Close every handle of the loop; a message still in flight (hard stop)
 * ends as RETRY. */
static void close_loop(replay_t *rp, int made) {
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
}

/* The summary lines on stdout; returns the exit status. */
static int print_summary(const replay_t *rp, double elapsed) {
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
  if (interrupted) return 3;
  if (rp->fatal || rp->rd.read_errors || rp->c.refused != rp->c_prev.refused ||
      rp->c.failed != rp->c_prev.failed ||
      (rp->sent_now == 0 && rp->skipped_done == 0 && rp->selected == 0 && rp->rd.messages == 0))
    return 1;
  return 0;
}

/* Send until the input ends or a signal stops it; returns the exit status. */
static int run_replay(replay_t *rp, const cad_cli_mllp_t *mo) {
  cad_tls_ctx_t *ctx = NULL;
  char err[300];
  if (cad_cli_mllp_tls(mo, &ctx, err, sizeof err) != 0) {
    fprintf(stderr, "caduceus replay: TLS: %s\n", err);
    return 1;
  }
  int made = setup_loop(rp, mo, ctx);
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
  close_loop(rp, made);
  cad_tls_ctx_unref(ctx);
  if (rp->resume_path) cad__replay_write_snapshot(rp);
  return print_summary(rp, elapsed);
}

static void free_replay(replay_t *rp) {
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
}

int cad_cli_replay(int argc, char **argv) {
  replay_t *rp = calloc(1, sizeof *rp);
  const char **args = calloc((size_t)argc + 1, sizeof *args);
  if (rp) rp->types = calloc((size_t)argc + 1, sizeof *rp->types);
  if (!rp || !args || !rp->types) {
    if (rp) free(rp->types);
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
  int status = parse_options(rp, &mo, argc, argv, args, &nargs);
  if (status < 0) status = setup_files(rp, args, nargs) != 0 ? 1 : run_replay(rp, &mo);
  free_replay(rp);
  free(args);
  return status;
}
