/* dest_kind.h - the kinds of destination the engine can deliver to, and the
 * per-destination payload steps every kind shares.
 *
 * A destination kind (file, mllp, ...) is one entry of a table
 * (dest_kind.c, `kinds`): how to open it from its configuration, how to
 * deliver one message, and how to close it.  Each kind's code lives beside
 * its channel (channels/<kind>/) with a small adapter in
 * engine/runtime/dest_<kind>.c.  A new kind: its options in channels/, its
 * key table line in engine/config/config_dests.c, its adapter file and one
 * line in `kinds`.
 *
 * Renders: before a message reaches the kind, the destination's payload
 * steps run in order (dest_render.c, `renders`): for example a conversion
 * to another format or character set.  A step that has nothing to do for
 * this destination returns 1 and costs nothing; one that fails gives the
 * message up at once (CAD_DELIVER_FAIL: dead letter or block, per
 * on_failure) with its PHI-free reason.
 *
 * Memory: cad_dest_t owns the kind's state; a rendered copy of a message is
 * owned by the destination until the kind reports that message done.
 * Loop thread only.
 */
#ifndef CAD_DEST_KIND_H
#define CAD_DEST_KIND_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "delivery.h"

typedef struct cad_dest_kind {
  cad_dest_type_t type;
  const char *name; /* as in `type:` */
  /* Open the kind's state for destination cd (borrowed: outlives *impl).
   * 0, or a negative error with a PHI-free reason in err. */
  int (*open)(uv_loop_t *loop, const cad_conf_dest_t *cd, void **impl, char *err, size_t cap);
  /* As cad_dest_driver_t.deliver. */
  int (*deliver)(void *impl, const char *p, size_t len, uint64_t seq, cad_deliver_done_cb done,
                 void *ctx);
  /* As cad_dest_driver_t.window (0 = 1). */
  unsigned window;
  /* Free the state; a delivery in flight is answered first, as the kind
   * says (called when no worker uses it any more). */
  void (*close)(void *impl);
} cad_dest_kind_t;

/* The kind of type t, or NULL. */
const cad_dest_kind_t *cad_dest_kind_find(cad_dest_type_t t);

/* One payload step (dest_render.c): for destination cd, make the bytes the
 * kind is given from message p/len.  Returns 1 when it has nothing to do
 * (no output), 0 with *out (malloc'd; the caller frees it) and *outlen, or a
 * negative error with a PHI-free reason in `why` (the message is given up). */
typedef int (*cad_dest_render_fn)(const cad_conf_dest_t *cd, const char *p, size_t len, char **out,
                                  size_t *outlen, char *why, size_t why_cap);
/* The steps configured for cd, in order: fills fns (up to cap), returns the
 * count.  0 = the message goes to the kind as it is queued. */
size_t cad_dest_renders(const cad_conf_dest_t *cd, cad_dest_render_fn *fns, size_t cap);

/* One open destination: its kind's state and its payload steps. */
typedef struct cad_dest cad_dest_t;

/* Open destination cd (borrowed: must outlive the result).  0 or a
 * negative error with the reason in err. */
int cad_dest_open(uv_loop_t *loop, const cad_conf_dest_t *cd, cad_dest_t **out, char *err,
                  size_t cap);
/* Its driver for the delivery worker (delivery.h). */
cad_dest_driver_t cad_dest_driver(cad_dest_t *d);
void cad_dest_close(cad_dest_t *d);

#endif
