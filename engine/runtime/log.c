/* log.c - one line per event, key=value or JSON (log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

cad_log_level_t cad_log_min_level = CAD_LOG_INFO;
static cad_log_format_t log_format = CAD_LOG_KV;
static int log_fd = 2;

#define LINE_MAX_BYTES 4096
#define UNTRUSTED_MAX 64

typedef struct {
  char b[LINE_MAX_BYTES];
  size_t n;
} line_t;

static void put(line_t *l, const char *p, size_t n) {
  if (l->n + n > sizeof l->b - 2) n = sizeof l->b - 2 - l->n; /* keep room for \n */
  memcpy(l->b + l->n, p, n);
  l->n += n;
}
static void puts_(line_t *l, const char *s) { put(l, s, strlen(s)); }

static void putf(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line_t *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = sizeof l->b - 2 - l->n;
  int k = vsnprintf(l->b + l->n, room + 1, fmt, ap);
  va_end(ap);
  if (k > 0) l->n += (size_t)k < room ? (size_t)k : room;
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

void cad_log_setup(cad_log_level_t level, cad_log_format_t format, int fd) {
  cad_log_min_level = level;
  log_format = format;
  if (fd >= 0) log_fd = fd;
}

/* A value, quoted and escaped as the format needs. */
static void put_value(line_t *l, const char *p, size_t n) {
  bool json = log_format == CAD_LOG_JSON;
  bool quote = json || n == 0;
  if (!json)
    for (size_t i = 0; i < n && !quote; i++) {
      unsigned char c = (unsigned char)p[i];
      if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) quote = true;
    }
  if (quote) put(l, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(l, e, 2);
    } else if (c < 0x20 || c == 0x7f || (!json && c >= 0x80)) {
      if (json) putf(l, "\\u%04x", c);
      else putf(l, "\\x%02x", c);
    } else {
      put(l, (const char *)&c, 1);
    }
  }
  if (quote) put(l, "\"", 1);
}

static bool first_key;

static void put_key(line_t *l, const char *k) {
  if (log_format == CAD_LOG_JSON) {
    if (!first_key) put(l, ",", 1);
    put(l, "\"", 1);
    puts_(l, k);
    put(l, "\":", 2);
  } else {
    if (!first_key) put(l, " ", 1);
    puts_(l, k);
    put(l, "=", 1);
  }
  first_key = false;
}

static void kv_str(line_t *l, const char *k, const char *v) {
  if (!v) return;
  put_key(l, k);
  put_value(l, v, strlen(v));
}

static void kv_span(line_t *l, const char *k, cad_str_t v) {
  if (!v.p || !v.len) return;
  put_key(l, k);
  put_value(l, v.p, v.len < UNTRUSTED_MAX ? v.len : UNTRUSTED_MAX);
}

static void kv_num(line_t *l, const char *k, uint64_t v) {
  put_key(l, k);
  putf(l, "%llu", (unsigned long long)v);
}

void cad_log_emit(cad_log_level_t level, const char *event, const cad_log_ctx_t *ctx,
                  const char *fmt, ...) {
  line_t l;
  l.n = 0;
  int saved_errno = errno;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  time_t sec = tv.tv_sec;
  gmtime_r(&sec, &tm);
  char ts[96];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
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
    if (k > 0) {
      put_key(&l, "msg");
      put_value(&l, text, (size_t)k < sizeof text ? (size_t)k : sizeof text - 1);
    }
  }
  if (log_format == CAD_LOG_JSON) l.b[l.n++] = '}';
  l.b[l.n++] = '\n';
  size_t off = 0;
  while (off < l.n) {
    ssize_t w = write(log_fd, l.b + off, l.n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  errno = saved_errno;
}
