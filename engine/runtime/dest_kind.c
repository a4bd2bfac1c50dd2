/* dest_kind.c - the table of destination kinds and the payload steps in
 * front of them (dest_kind.h). */
#include "dest_kind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "dest_kinds_int.h"

static const cad_dest_kind_t *const kinds[] = {
    &cad_dest_kind_file,     &cad_dest_kind_mllp,  &cad_dest_kind_sftp,
    &cad_dest_kind_postgres, &cad_dest_kind_kafka, &cad_dest_kind_http,
};

const cad_dest_kind_t *cad_dest_kind_find(cad_dest_type_t t) {
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (kinds[i]->type == t) return kinds[i];
  return NULL;
}

#define MAX_RENDERS 8

struct cad_dest {
  const cad_conf_dest_t *cd;
  const cad_dest_kind_t *kind;
  void *impl;
  cad_dest_render_fn renders[MAX_RENDERS];
  size_t nrenders;
};

/* One rendered message in flight: freed when the kind reports it done. */
typedef struct rendered {
  char *buf;
  cad_deliver_done_cb done;
  void *ctx;
} rendered_t;

static void rendered_done(void *arg, cad_deliver_outcome_t outcome, const char *detail) {
  rendered_t *r = arg;
  cad_deliver_done_cb done = r->done;
  void *ctx = r->ctx;
  /* The kind may still point into buf while its callback runs: free after. */
  done(ctx, outcome, detail);
  free(r->buf);
  free(r);
}

/* The deliver function when the destination has payload steps. */
static int render_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                          cad_deliver_done_cb done, void *ctx) {
  cad_dest_t *d = impl;
  char *cur = NULL; /* owned: the output of the last step that ran */
  size_t curlen = len;
  const char *in = p;
  for (size_t i = 0; i < d->nrenders; i++) {
    char *out = NULL;
    size_t outlen = 0;
    char why[160] = "";
    int rc = d->renders[i](d->cd, in, curlen, &out, &outlen, why, sizeof why);
    if (rc == 1) continue;
    if (rc < 0) {
      free(cur);
      done(ctx, CAD_DELIVER_FAIL, why[0] ? why : cad_err_name(rc));
      return 0;
    }
    free(cur);
    cur = out;
    in = out;
    curlen = outlen;
  }
  if (!cur) return d->kind->deliver(d->impl, p, len, seq, done, ctx);
  rendered_t *r = malloc(sizeof *r);
  if (!r) {
    free(cur);
    return CAD_E_NOMEM;
  }
  *r = (rendered_t){cur, done, ctx};
  int rc = d->kind->deliver(d->impl, cur, curlen, seq, rendered_done, r);
  if (rc < 0) {
    free(cur);
    free(r);
  }
  return rc;
}

int cad_dest_open(uv_loop_t *loop, const cad_conf_dest_t *cd, cad_dest_t **out, char *err,
                  size_t cap) {
  const cad_dest_kind_t *k = cad_dest_kind_find(cd->type);
  if (!k) {
    snprintf(err, cap, "no destination kind for type %d", (int)cd->type);
    return CAD_E_CONFIG;
  }
  cad_dest_t *d = calloc(1, sizeof *d);
  if (!d) return CAD_E_NOMEM;
  d->cd = cd;
  d->kind = k;
  d->nrenders = cad_dest_renders(cd, d->renders, MAX_RENDERS);
  int rc = k->open(loop, cd, &d->impl, err, cap);
  if (rc < 0) {
    free(d);
    return rc;
  }
  *out = d;
  return 0;
}

cad_dest_driver_t cad_dest_driver(cad_dest_t *d) {
  if (d->nrenders) return (cad_dest_driver_t){render_deliver, d, d->kind->window};
  return (cad_dest_driver_t){d->kind->deliver, d->impl, d->kind->window};
}

void cad_dest_close(cad_dest_t *d) {
  if (!d) return;
  d->kind->close(d->impl);
  free(d);
}
