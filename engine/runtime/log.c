/* log.c - one line per event, key=value or JSON (log.h). */
#include "log.h"

#include "cad_json.h"

#include <errno.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log_limit.h"

cad_log_level_t cad_log_min_level = CAD_LOG_INFO;
static cad_log_format_t log_format = CAD_LOG_KV;
static int log_fd = 2;

#define LINE_MAX_BYTES 4096
#define UNTRUSTED_MAX 64

/* A line is built in a fixed buffer.  Every piece is written whole or not
 * at all (an escape, a key with its separator, a number), so a line cut at
 * LINE_MAX_BYTES is still one valid JSON object / kv line: RESERVE bytes
 * are kept for the closing quote of the value being written, the closing
 * brace and the newline. */
#define RESERVE 3

typedef struct {
  char b[LINE_MAX_BYTES];
  size_t n;
  bool full; /* a piece did not fit: what follows is dropped */
} line_t;

static bool put(line_t *l, const char *p, size_t n) {
  if (l->full || l->n + n > sizeof l->b - RESERVE) {
    l->full = true;
    return false;
  }
  memcpy(l->b + l->n, p, n);
  l->n += n;
  return true;
}
static bool puts_(line_t *l, const char *s) { return put(l, s, strlen(s)); }

/* Into the reserve: only for the closers that RESERVE counts. */
static void put_closer(line_t *l, char c) {
  if (l->n < sizeof l->b) l->b[l->n++] = c;
}

const char *cad_log_level_name(cad_log_level_t lv) {
  switch (lv) {
    case CAD_LOG_DEBUG: return "debug";
    case CAD_LOG_INFO: return "info";
    case CAD_LOG_WARN: return "warn";
    case CAD_LOG_ERROR: return "error";
  }
  return "info";
}

/* Lines of the batching thread (the loop thread) wait here until
 * cad_log_flush(); only that thread touches batch_buf and batch_len. */
#define BATCH_BYTES (64 * 1024)
static char batch_buf[BATCH_BYTES];
static size_t batch_len;
static _Thread_local bool batching;
static bool atexit_set;

static void write_all(const char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(log_fd, p + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
}

void cad_log_flush(void) {
  if (!batching || !batch_len) return;
  int saved_errno = errno;
  write_all(batch_buf, batch_len);
  batch_len = 0;
  errno = saved_errno;
}

static void flush_at_exit(void) { cad_log_flush(); }

void cad_log_batch(bool on) {
  if (on && !atexit_set) atexit_set = atexit(flush_at_exit) == 0;
  if (!on) cad_log_flush();
  batching = on;
}

void cad_log_setup(cad_log_level_t level, cad_log_format_t format, int fd) {
  cad_log_flush(); /* what waits goes where it was meant to */
  cad_log_min_level = level;
  log_format = format;
  if (fd >= 0) log_fd = fd;
}

/* The escaper's sink: an escape whole or not at all; verbatim UTF-8 cut
 * only before a lead byte (cad_json.h). */
static int line_sink(void *ud, const char *p, size_t n) {
  line_t *l = ud;
  if (put(l, p, n)) return 0;
  if (p[0] != '\\') {
    size_t room = sizeof l->b - RESERVE - l->n;
    while (room > 0 && room < n && ((unsigned char)p[room] & 0xC0) == 0x80) room--;
    memcpy(l->b + l->n, p, room);
    l->n += room;
  }
  return -1;
}

static _Thread_local bool first_key; /* per line being built: per thread */

/* The separator, the key and what opens its value, as one piece: false when
 * it does not fit (the pair is then left out). */
static bool put_key(line_t *l, const char *k, bool quote) {
  /* Built by hand, not by snprintf: this runs ~10 times per line, and at
   * info every message writes a line (bench/bench_log.c). */
  char tmp[96];
  bool json = log_format == CAD_LOG_JSON;
  size_t kl = strlen(k), n = 0;
  if (kl > sizeof tmp - 6) return false;
  if (!first_key) tmp[n++] = json ? ',' : ' ';
  if (json) tmp[n++] = '"';
  memcpy(tmp + n, k, kl);
  n += kl;
  if (json) tmp[n++] = '"';
  tmp[n++] = json ? ':' : '=';
  if (quote) tmp[n++] = '"';
  if (!put(l, tmp, n)) return false;
  first_key = false;
  return true;
}

/* A pair whose value is untrusted text, quoted and escaped as the format
 * needs.  A value cut at the end of the line is still closed. */
static void kv_text(line_t *l, const char *k, const char *p, size_t n) {
  bool json = log_format == CAD_LOG_JSON;
  bool quote = json || n == 0;
  for (size_t i = 0; i < n && !quote; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) quote = true;
  }
  if (!put_key(l, k, quote)) return;
  cad_text_escape(json ? CAD_ESC_JSON : CAD_ESC_KV, p, n, line_sink, l);
  if (quote) put_closer(l, '"');
}

static void kv_str(line_t *l, const char *k, const char *v) {
  if (v) kv_text(l, k, v, strlen(v));
}

static void kv_span(line_t *l, const char *k, cad_str_t v) {
  if (!v.p || !v.len) return;
  size_t n = v.len;
  if (n > UNTRUSTED_MAX) { /* cut before a character, not inside one */
    n = UNTRUSTED_MAX;
    while (n > UNTRUSTED_MAX - 3 && ((unsigned char)v.p[n] & 0xC0) == 0x80) n--;
  }
  kv_text(l, k, v.p, n);
}

/* v in decimal at the end of buf[24]; returns where it starts. */
static char *u64_dec(char buf[24], uint64_t v) {
  char *p = buf + 24;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return p;
}

static void kv_num(line_t *l, const char *k, uint64_t v) {
  char buf[24];
  const char *num = u64_dec(buf, v);
  size_t n = (size_t)(buf + sizeof buf - num);
  size_t mark = l->n;
  bool was_first = first_key;
  if (!put_key(l, k, false)) return;
  if (!put(l, num, n)) { /* no key without its value */
    l->n = mark;
    first_key = was_first;
  }
}

/* "2026-11-25T11:07:03.123Z" into ts[80]: the date and time are formatted
 * once per second, the milliseconds per line.  The cache is per thread (the
 * archive's thread logs too). */
static void timestamp(char ts[80]) {
  static _Thread_local time_t cached_sec = (time_t)-1;
  static _Thread_local char cached[64]; /* "2026-11-25T11:07:03." */
  struct timeval tv;
  gettimeofday(&tv, NULL);
  if (tv.tv_sec != cached_sec) {
    struct tm tm;
    time_t sec = tv.tv_sec;
    gmtime_r(&sec, &tm);
    snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_sec = tv.tv_sec;
  }
  size_t n = strlen(cached);
  memcpy(ts, cached, n);
  int ms = (int)(tv.tv_usec / 1000);
  ts[n++] = (char)('0' + ms / 100);
  ts[n++] = (char)('0' + ms / 10 % 10);
  ts[n++] = (char)('0' + ms % 10);
  ts[n++] = 'Z';
  ts[n] = 0;
}

void cad_log_emit(cad_log_level_t level, const char *event, const cad_log_ctx_t *ctx,
                  const char *fmt, ...) {
  if (!cad__log_limit_allow(level, event, ctx)) return;
  line_t l;
  l.n = 0;
  l.full = false;
  int saved_errno = errno;
  char ts[80];
  timestamp(ts);
  first_key = true;
  if (log_format == CAD_LOG_JSON) {
    put(&l, "{", 1);
    kv_str(&l, "ts", ts);
  } else {
    puts_(&l, ts);
    first_key = false;
  }
  kv_str(&l, "level", cad_log_level_name(level));
  kv_str(&l, "event", event);
  if (ctx) {
    kv_str(&l, "channel", ctx->channel);
    kv_str(&l, "peer", ctx->peer);
    if (ctx->conn) kv_num(&l, "conn", ctx->conn);
    kv_span(&l, "ctl", ctx->ctl);
    kv_span(&l, "type", ctx->type);
    if (ctx->bytes >= 0) kv_num(&l, "bytes", (uint64_t)ctx->bytes);
    kv_str(&l, "outcome", ctx->outcome);
    kv_str(&l, "error", ctx->error);
    for (size_t i = 0; i < ctx->nnums; i++) kv_num(&l, ctx->nums[i].key, ctx->nums[i].val);
  }
  if (fmt) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (k > 0) kv_text(&l, "msg", text, (size_t)k < sizeof text ? (size_t)k : sizeof text - 1);
  }
  if (log_format == CAD_LOG_JSON) put_closer(&l, '}');
  put_closer(&l, '\n');
  if (batching && level < CAD_LOG_WARN) {
    if (batch_len + l.n > sizeof batch_buf) cad_log_flush();
    memcpy(batch_buf + batch_len, l.b, l.n);
    batch_len += l.n;
  } else {
    cad_log_flush(); /* a warning or an error: after what came before it, at once */
    write_all(l.b, l.n);
  }
  errno = saved_errno;
}
