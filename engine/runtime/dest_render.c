/* dest_render.c - the payload steps of a destination (dest_kind.h): which
 * run for a destination, in order.  A step is a function of its own module
 * (a format conversion, a character set); this file only lists them. */
#include "dest_kind.h"

#include <stdio.h>
#include <stdlib.h>

#include "cad_error.h"
#include "fhir.h"

/* `format: fhir | json | xml` (parsers/fhir/fhir.h). */
static int format_wanted(const cad_conf_dest_t *cd) { return cd->format != CAD_FORMAT_ER7; }

static int format_render(const cad_conf_dest_t *cd, const char *p, size_t len, char **out,
                         size_t *outlen, char *why, size_t why_cap) {
  cad_buf_t b = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  int rc = cad_render(cd->format, p, len, cd->fhir, &b, &dg);
  if (rc) {
    snprintf(why, why_cap, "format %s: %s", cad_format_name(cd->format),
             dg.reason[0] ? dg.reason : cad_strerror(rc));
    cad_buf_free(&b);
    return rc;
  }
  *out = b.data ? b.data : malloc(1);
  *outlen = b.len;
  return *out ? 0 : CAD_E_NOMEM;
}

/* One line a step: whether destination cd needs it, and the step. */
typedef struct render_step {
  int (*wanted)(const cad_conf_dest_t *cd);
  cad_dest_render_fn fn;
} render_step_t;

static const render_step_t steps[] = {
    {NULL, NULL}, /* placeholder so the table is never empty */
    {format_wanted, format_render},
};

size_t cad_dest_renders(const cad_conf_dest_t *cd, cad_dest_render_fn *fns, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if (steps[i].fn && steps[i].wanted && steps[i].wanted(cd) && n < cap) fns[n++] = steps[i].fn;
  return n;
}
