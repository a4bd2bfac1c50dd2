/* admin_audit.c - the audit trail of the admin API (admin_int.h).
 *
 * data_dir/audit.jsonl: one JSON object a line, {time, token, peer, action,
 * target, result}, appended with O_APPEND (mode 0600) and never rewritten
 * by the engine; each line is also logged (event admin.audit).  A line
 * names what was touched (a channel, a destination and dead-letter number,
 * a message id), never message contents.  GET /api/v1/audit reads the
 * newest lines back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin_int.h"
#include "cad_error.h"
#include "cad_io.h"
#include "log.h"

#define AUDIT_FILE "audit.jsonl"
#define AUDIT_READ_MAX ((size_t)1 << 20) /* bytes read back from the end */
#define AUDIT_LIST_MAX 1000

static void iso_time(uint64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t l = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + l, 40 - l, ".%03uZ", (unsigned)(ms % 1000));
}

static int audit_open(cad_admin_t *a) {
  if (a->audit_fd >= 0) return a->audit_fd;
  const cad_admin_ctl_t *ctl = a->view.ctl;
  if (!ctl || !ctl->data_dir) return -1;
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", ctl->data_dir, AUDIT_FILE);
  a->audit_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (a->audit_fd < 0)
    CAD_LOG(CAD_LOG_ERROR, "admin.audit_failed", NULL, "%s: %s", path, strerror(errno));
  return a->audit_fd;
}

void cad__admin_audit(cad_admin_t *a, const char *token, const char *peer, const char *action,
                      const char *target, const char *result) {
  char when[40];
  iso_time(cad_now_ms(), when);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "time", when, "token", token, "peer",
                        peer, "action", action, "target", target, "result", result);
  char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  CAD_LOG(CAD_LOG_INFO, "admin.audit", NULL, "token=%s peer=%s action=%s target=%s result=%s",
          token, peer, action, target, result);
  int fd = audit_open(a);
  if (line && fd >= 0) {
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps' NUL becomes the line end: one write, whole */
    if (write(fd, line, n + 1) != (ssize_t)(n + 1))
      CAD_LOG(CAD_LOG_ERROR, "admin.audit_failed", NULL, "write: %s", strerror(errno));
  }
  free(line);
}

void cad__admin_audit_call(cad__admin_call_t *c, const char *action, const char *target,
                           const char *result) {
  cad__admin_audit(c->a, c->tok ? c->tok->name : "-", c->req->peer ? c->req->peer : "?", action,
                   target, result);
}

void cad__admin_audit_close(cad_admin_t *a) {
  if (a->audit_fd >= 0) close(a->audit_fd);
  a->audit_fd = -1;
}

/* GET /api/v1/audit?limit=N: the newest N lines (default 100), newest first. */
void cad__admin_audit_get(cad__admin_call_t *c) {
  char v[32];
  uint64_t limit = 100;
  int q = cad__admin_query(c->req, "limit", v, sizeof v);
  if (q < 0 || (q == 1 && (cad__admin_u64(v, &limit) < 0 || limit == 0)))
    return cad__admin_error(c->res, 400, "bad_request", "limit: expected a positive number");
  if (limit > AUDIT_LIST_MAX) limit = AUDIT_LIST_MAX;
  json_t *arr = json_array();
  const cad_admin_ctl_t *ctl = c->a->view.ctl;
  char path[4200];
  int fd = -1;
  if (ctl && ctl->data_dir) {
    snprintf(path, sizeof path, "%s/%s", ctl->data_dir, AUDIT_FILE);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  }
  struct stat st;
  char *buf = NULL;
  size_t len = 0;
  if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
    size_t want = (size_t)st.st_size < AUDIT_READ_MAX ? (size_t)st.st_size : AUDIT_READ_MAX;
    off_t from = st.st_size - (off_t)want;
    buf = malloc(want + 1);
    ssize_t got = buf ? pread(fd, buf, want, from) : -1;
    len = got > 0 ? (size_t)got : 0;
    /* Cut into the middle of a line: skip to the first whole one. */
    size_t start = 0;
    if (from > 0) {
      char *nl = buf ? memchr(buf, '\n', len) : NULL;
      start = nl ? (size_t)(nl - buf) + 1 : len;
    }
    size_t end = len;
    while (arr && end > start && json_array_size(arr) < limit) {
      size_t e = end;
      if (buf[e - 1] == '\n') e--;
      size_t b = e;
      while (b > start && buf[b - 1] != '\n') b--;
      json_t *o = json_loadb(buf + b, e - b, 0, NULL);
      if (o) json_array_append_new(arr, o);
      end = b;
    }
  }
  if (fd >= 0) close(fd);
  free(buf);
  cad__admin_json(c->res, 200, json_pack("{s:o?}", "entries", arr));
}
