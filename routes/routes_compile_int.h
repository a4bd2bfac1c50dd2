/* routes_compile_int.h - what the two halves of the route compiler share:
 * routes_compile.c (conditions, paths, templates, routes) and
 * routes_compile_steps.c (transform steps).  Internal to routes/.
 *
 * Memory: everything compiled lives in the routes' arena (c->r->arena),
 * released with cad_routes_free(); regexes are registered there too.
 * Every function that fails reports the error (with file:line:col) in c->e
 * and returns false or NULL.
 */
#ifndef CAD_ROUTES_COMPILE_INT_H
#define CAD_ROUTES_COMPILE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "routes_int.h"

typedef struct comp {
  cad_routes_t *r;
  cad__errs_t e;
  const cad_tables_t *tables;
  bool nomem;
} comp_t;

#define ERR(c, node, ...) cad__err_node(&(c)->e, (node), __VA_ARGS__)

/* Column of byte `off` inside a scalar (quotes shift by one). */
static inline int scalar_col(const cad_yaml_node_t *n, size_t off) {
  int q = (n->style == CAD_YAML_SINGLE || n->style == CAD_YAML_DOUBLE) ? 1 : 0;
  return n->col + q + (int)off;
}

static inline bool is_header_seg(const cad_hl7_path_t *p) { return cad_hl7_is_header_id(p->segid); }
static inline bool is_header_text(const char *s) { return cad_hl7_is_header_id(cad_hl7_segid(s)); }

/* Zeroed arena memory (n may be 0); NULL sets c->nomem. */
void *cad__comp_alloc(comp_t *c, size_t n);
/* A NUL-terminated arena copy of n bytes. */
char *cad__comp_dupn(comp_t *c, const char *s, size_t n);
/* The node is a non-null scalar (else reported with `what`). */
bool cad__comp_want_scalar(comp_t *c, const cad_yaml_node_t *n, const char *what);
/* A POSIX extended regex from a scalar, registered for cad_routes_free(). */
regex_t *cad__comp_regex(comp_t *c, const cad_yaml_node_t *n, bool nosub);
/* n bytes form a segment id: 3 of [A-Z0-9]. */
bool cad__comp_is_segid(const char *s, size_t n);
bool cad__comp_want_segid(comp_t *c, const cad_yaml_node_t *n, const char *what, char out[4]);
/* A path to read / a path to write (no wildcard segment, no MSH-1/2). */
bool cad__comp_want_path(comp_t *c, const cad_yaml_node_t *n, cad__rpath_t *out);
bool cad__comp_want_target(comp_t *c, const cad_yaml_node_t *n, cad__rpath_t *out);
/* A table named under the top-level 'tables'. */
const cad__table_t *cad__comp_want_table(comp_t *c, const cad_yaml_node_t *n);
/* ER7 text with ${PATH} references. */
bool cad__comp_want_template(comp_t *c, const cad_yaml_node_t *n, cad__tpl_t *out);
/* A condition (depth counts nesting, bounded). */
cad__cond_t *cad__comp_cond(comp_t *c, const cad_yaml_node_t *n, int depth);

/* One transform step (routes_compile_steps.c); idx is its 0-based index. */
bool cad__comp_step(comp_t *c, const cad_yaml_node_t *n, cad__step_t *st, size_t idx);

#endif
