/* log_limit.c - rate limit of repeated warnings (log_limit.h). */
#include "log_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_io.h" /* cad_mono_ms */

#define NKEYS 128
#define SWEEP_EVERY_MS 1000u

typedef struct {
  bool used;
  char event[40];
  char peer[64]; /* address without port; "" = none */
  uint64_t conn; /* 0 = the peer's key */
  uint64_t since;
  uint32_t lines;
  uint64_t suppressed;
} slot_t;

static slot_t keys[NKEYS];
static uint64_t last_sweep;
static bool in_summary; /* the summary line itself is not limited */

/* "10.0.0.7:4012" -> "10.0.0.7", "[::1]:4012" -> "[::1]". */
static void peer_host(const char *peer, char *out, size_t cap) {
  out[0] = 0;
  if (!peer) return;
  size_t n = strlen(peer);
  const char *colon = strrchr(peer, ':');
  if (colon && (peer[0] != '[' || (colon > peer && colon[-1] == ']'))) n = (size_t)(colon - peer);
  if (n >= cap) n = cap - 1;
  memcpy(out, peer, n);
  out[n] = 0;
}

static void summarise(slot_t *k) {
  if (k->suppressed) {
    cad_log_ctx_t c = CAD_LOG_CTX_INIT;
    cad_log_num_t num = {"suppressed", k->suppressed};
    c.peer = k->peer[0] ? k->peer : NULL;
    c.conn = k->conn;
    c.nums = &num;
    c.nnums = 1;
    in_summary = true;
    CAD_LOG(CAD_LOG_WARN, "log.suppressed", &c,
            "%s: %llu lines suppressed (rate limit: %u per connection, %u per peer in %u s)",
            k->event, (unsigned long long)k->suppressed, CAD_LOG_LIMIT_CONN, CAD_LOG_LIMIT_PEER,
            CAD_LOG_LIMIT_WINDOW_MS / 1000);
    in_summary = false;
  }
  k->used = false;
}

static void sweep(uint64_t now, bool all) {
  for (size_t i = 0; i < NKEYS; i++)
    if (keys[i].used && (all || now - keys[i].since >= CAD_LOG_LIMIT_WINDOW_MS))
      summarise(&keys[i]);
  last_sweep = now;
}

static slot_t *find(const char *event, const char *peer, uint64_t conn, uint64_t now) {
  slot_t *free_k = NULL, *oldest = NULL;
  for (size_t i = 0; i < NKEYS; i++) {
    slot_t *k = &keys[i];
    if (!k->used) {
      if (!free_k) free_k = k;
      continue;
    }
    if (k->conn == conn && strncmp(k->event, event, sizeof k->event - 1) == 0 &&
        strcmp(k->peer, peer) == 0) {
      if (now - k->since >= CAD_LOG_LIMIT_WINDOW_MS) {
        summarise(k);
        free_k = k;
        break;
      }
      return k;
    }
    if (!oldest || k->since < oldest->since) oldest = k;
  }
  if (!free_k) {
    summarise(oldest);
    free_k = oldest;
  }
  memset(free_k, 0, sizeof *free_k);
  free_k->used = true;
  snprintf(free_k->event, sizeof free_k->event, "%s", event);
  snprintf(free_k->peer, sizeof free_k->peer, "%s", peer);
  free_k->conn = conn;
  free_k->since = now;
  return free_k;
}

static void flush_at_exit(void) { cad__log_limit_flush(); }

bool cad__log_limit_allow(cad_log_level_t level, const char *event, const cad_log_ctx_t *ctx) {
  if (in_summary || !event) return true;
  uint64_t now = cad_mono_ms();
  if (now - last_sweep >= SWEEP_EVERY_MS) sweep(now, false);
  if (level < CAD_LOG_WARN) return true;
  char host[64];
  peer_host(ctx ? ctx->peer : NULL, host, sizeof host);
  slot_t *kp = find(event, host, 0, now);
  slot_t *kc = ctx && ctx->conn ? find(event, host, ctx->conn, now) : NULL;
  static bool exit_hook;
  slot_t *over = kc && kc->lines >= CAD_LOG_LIMIT_CONN ? kc
                 : kp->lines >= CAD_LOG_LIMIT_PEER     ? kp
                                                       : NULL;
  if (over) {
    over->suppressed++;
    if (!exit_hook) exit_hook = atexit(flush_at_exit) == 0; /* no summary lost */
    return false;
  }
  kp->lines++;
  if (kc) kc->lines++;
  return true;
}

void cad__log_limit_flush(void) { sweep(cad_mono_ms(), true); }
