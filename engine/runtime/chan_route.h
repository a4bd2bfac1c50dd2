/* chan_route.h - route one message of a channel with its character sets.
 *
 * The one place where a channel's routes run (the pipeline, `caduceus
 * test`, `caduceus preview`, requeued dead letters), so they all see the
 * same thing:
 *
 *   1. the message's set is its MSH-18, else the channel's `charset:`, else
 *      undeclared; a message in a set other than UTF-8 or ASCII is
 *      converted to UTF-8 (the routes read and write UTF-8);
 *   2. the routes run (cad_routes_eval);
 *   3. each output is written in the set its destination's `encoding:`
 *      requires (MSH-18 rewritten), or back in the message's own set; a
 *      message that needed no conversion is passed on byte for byte.
 *
 * What goes to the journal is therefore exactly what each destination
 * receives (docs/charsets.md says why there and not at delivery).
 *
 * Memory: as cad_routes_eval (everything in the caller's arena; outputs may
 * borrow `bytes`).
 */
#ifndef CAD_CHAN_ROUTE_H
#define CAD_CHAN_ROUTE_H

#include "config.h"
#include "hl7.h"
#include "routes.h"

/* Route `len` bytes at `bytes` (parsed: their tree, or NULL to parse here)
 * through channel cc.  Returns as cad_routes_eval (0: see res), or 1 when
 * the message was refused before the routes because of its character set
 * (res->disposition CAD_ROUTE_REJECTED, res->diag: HL7 103 at MSH-18 for a
 * set that is not supported, 102 where a byte is not valid in it; the ACK
 * is AR).  A character a destination's set cannot represent under
 * `unrepresentable: reject` fails the whole message as a transform does:
 * CAD_ROUTE_ERROR (AE, HL7 102) or, with `on_error: dead_letter`,
 * CAD_ROUTE_DEAD_LETTER. */
int cad_chan_route(const cad_conf_channel_t *cc, const char *bytes, size_t len,
                   const cad_hl7_msg_t *parsed, cad_arena_t *a, cad_route_result_t *res);

#endif
