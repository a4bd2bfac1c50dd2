/* source.c - the table of source kinds and the set of running sources
 * (source.h). */
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "log.h"
#include "src_dir.h"
#include "src_sftp.h"
#include "src_http.h"

/* The kinds, one line each. */
extern const cad_source_kind_t cad_source_kind_kafka; /* src_kafka.c */
static const cad_source_kind_t *const kinds[] = {
    NULL, /* placeholder so the table is never empty */
    &cad_source_dir,
    &cad_source_sftp,
    &cad_source_kind_kafka,
    &cad__source_http,
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

typedef struct entry {
  struct entry *next;
  const cad_source_kind_t *kind;
  char channel[CAD_CONF_NAME_MAX + 1];
  void *impl;
  cad_pipe_chan_t *pc; /* the channel it feeds; its owner is held */
  bool keep;
} entry_t;

struct cad_sources {
  entry_t *head;
};

typedef struct stopping {
  int *closing;
  void (*stopped)(void *arg);
  void *arg;
} stopping_t;

static void hold(const cad_source_env_t *env, cad_pipe_chan_t *pc, int delta) {
  if (env->pipe->io.hold) env->pipe->io.hold(env->pipe->io.ud, pc->owner, delta);
}

static void entry_stopped(void *arg) {
  stopping_t *s = arg;
  (*s->closing)--;
  void (*cb)(void *) = s->stopped;
  void *cb_arg = s->arg;
  free(s);
  if (cb) cb(cb_arg);
}

static void entry_stop(entry_t *e, const cad_source_env_t *env, int *closing,
                       void (*stopped)(void *), void *arg) {
  stopping_t *s = malloc(sizeof *s);
  CAD_LOG(CAD_LOG_INFO, "source.stop", NULL, "channel %s: %s source stopping", e->channel,
          e->kind->name);
  hold(env, e->pc, -1);
  if (!s) {
    /* Nothing to tell when it is done: stop it all the same. */
    e->kind->stop(e->impl, NULL, NULL);
  } else {
    *s = (stopping_t){closing, stopped, arg};
    (*closing)++;
    e->kind->stop(e->impl, entry_stopped, s);
  }
  free(e);
}

static entry_t *find(cad_sources_t *set, const cad_source_kind_t *k, const char *channel) {
  for (entry_t *e = set->head; e; e = e->next)
    if (e->kind == k && strcmp(e->channel, channel) == 0) return e;
  return NULL;
}

int cad_sources_apply(cad_sources_t **setp, const cad_source_env_t *env,
                      cad_pipe_chan_t *const *pcs, size_t n, int *closing,
                      void (*stopped)(void *arg), void *arg) {
  if (!*setp) {
    *setp = calloc(1, sizeof **setp);
    if (!*setp) return CAD_E_NOMEM;
  }
  cad_sources_t *set = *setp;
  for (entry_t *e = set->head; e; e = e->next) e->keep = false;
  int first_err = 0;
  for (size_t i = 0; i < n; i++) {
    cad_pipe_chan_t *pc = pcs[i];
    for (size_t k = 0; k < NKINDS; k++) {
      const cad_source_kind_t *kind = kinds[k];
      if (!kind || !kind->wanted(pc->cc)) continue;
      entry_t *e = find(set, kind, pc->cc->name);
      if (e && !e->keep && kind->adopt(e->impl, pc) == 0) {
        hold(env, pc, +1);
        hold(env, e->pc, -1);
        e->pc = pc;
        e->keep = true;
        continue;
      }
      if (e) { /* its settings changed: stop it before the new one binds */
        entry_t **pp = &set->head;
        while (*pp != e) pp = &(*pp)->next;
        *pp = e->next;
        entry_stop(e, env, closing, stopped, arg);
      }
      entry_t *ne = calloc(1, sizeof *ne);
      char err[256] = "";
      int rc = ne ? kind->start(env, pc, &ne->impl, err, sizeof err) : CAD_E_NOMEM;
      cad_log_ctx_t c = CAD_LOG_CTX_INIT;
      c.channel = pc->cc->name;
      if (rc < 0) {
        free(ne);
        c.error = cad_err_name(rc);
        CAD_LOG(CAD_LOG_ERROR, "source.failed", &c, "%s source: %s", kind->name,
                err[0] ? err : cad_strerror(rc));
        if (!first_err) first_err = rc;
        continue;
      }
      CAD_LOG(CAD_LOG_INFO, "source.start", &c, "%s source", kind->name);
      ne->kind = kind;
      snprintf(ne->channel, sizeof ne->channel, "%s", pc->cc->name);
      ne->pc = pc;
      ne->keep = true;
      hold(env, pc, +1);
      ne->next = set->head;
      set->head = ne;
    }
  }
  entry_t **pp = &set->head;
  while (*pp) {
    entry_t *e = *pp;
    if (!e->keep) {
      *pp = e->next;
      entry_stop(e, env, closing, stopped, arg);
      continue;
    }
    pp = &e->next;
  }
  return first_err;
}

void cad_sources_stop_all(cad_sources_t *set, const cad_source_env_t *env, int *closing,
                          void (*stopped)(void *arg), void *arg) {
  if (!set) return;
  while (set->head) {
    entry_t *e = set->head;
    set->head = e->next;
    entry_stop(e, env, closing, stopped, arg);
  }
  free(set);
}
