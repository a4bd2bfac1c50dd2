/* dest_render.c - the payload steps of a destination (dest_kind.h): which
 * run for a destination, in order.  A step is a function of its own module
 * (a format conversion, a character set); this file only lists them. */
#include "dest_kind.h"

/* One line a step: whether destination cd needs it, and the step. */
typedef struct render_step {
  int (*wanted)(const cad_conf_dest_t *cd);
  cad_dest_render_fn fn;
} render_step_t;

static const render_step_t steps[] = {
    {NULL, NULL}, /* placeholder so the table is never empty */
};

size_t cad_dest_renders(const cad_conf_dest_t *cd, cad_dest_render_fn *fns, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if (steps[i].fn && steps[i].wanted && steps[i].wanted(cd) && n < cap) fns[n++] = steps[i].fn;
  return n;
}
