/* cli_replay_int.h - the state of `caduceus replay`, shared by the command
 * (cli_replay.c: options, the loop, the report) and its checkpoint
 * (cli_replay_ckpt.c: the snapshot file and its append-only log).  Internal
 * to the command line; see the top of cli_replay.c for the whole design.
 *
 * Memory: replay_t and everything it points to is owned by cad_cli_replay(),
 * which frees it at exit; the checkpoint functions only fill resume_done
 * (realloc'd, owned by the replay) and the counters.
 */
#ifndef CAD_CLI_REPLAY_INT_H
#define CAD_CLI_REPLAY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "cad_mem.h"
#include "cli_archive.h"
#include "mllp_sender.h"
#include "routes.h"

/* ---- positions ------------------------------------------------------------ */

/* A message's position: (source index, byte offset in the decompressed
 * source). */
typedef struct pos {
  uint32_t src;
  uint64_t off;
} pos_t;

static inline int pos_cmp(pos_t a, pos_t b) {
  if (a.src != b.src) return a.src < b.src ? -1 : 1;
  return a.off < b.off ? -1 : a.off > b.off ? 1 : 0;
}

static inline int pos_qcmp(const void *a, const void *b) {
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

/* ---- the checkpoint (cli_replay_ckpt.c) ------------------------------------ */

/* The position before which every message is finished. */
pos_t cad__replay_watermark(const replay_t *rp);
/* Write the snapshot (FILE.tmp, fsync, rename, fsync the directory) and
 * start a fresh log for its generation.  0 or negative (printed). */
int cad__replay_write_snapshot(replay_t *rp);
/* Append one finished message (kind 'A' accepted, 'R' refused, 'F' failed)
 * to the log with one write(2).  Errors are printed, not returned. */
void cad__replay_log_finished(replay_t *rp, pos_t p, char kind);
/* Load FILE (when it exists) and the records of FILE.log of the same
 * generation.  Returns 0, 1 (no checkpoint yet) or -1 (printed). */
int cad__replay_load_checkpoint(replay_t *rp);

#endif
