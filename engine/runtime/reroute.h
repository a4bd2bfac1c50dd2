/* reroute.h - a channel's requeued dead letters, routed again.
 *
 * A message a channel's routes could not take (a transform failed with
 * `on_error: dead_letter`) is kept in the dead letters of the queue
 * destination "channel:NAME".  `caduceus queue requeue DIR channel:NAME N`
 * puts it back in that destination's FIFO; this driver is what delivers it:
 * it runs the channel's routes again (with the configuration running now,
 * which is usually the fixed one) and appends what they give to the queue,
 * like a message just received.  Outcomes, through the usual delivery
 * worker (delivery.h):
 *   routed to destinations   delivered once those records are durable;
 *   filtered                 delivered (nothing to send);
 *   still failing            a permanent failure: dead-lettered again with
 *                            the routes' reason (a new dead-letter number);
 *   queue write failed       retried.
 *
 * Memory: the rerouter owns an arena for the message being routed; the
 * routes, limits and queue ids are borrowed and must outlive it (they belong
 * to the runtime that made it).  Loop thread only.
 */
#ifndef CAD_REROUTE_H
#define CAD_REROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "delivery.h"
#include "hl7.h"
#include "queue.h"
#include "routes.h"

typedef struct cad_reroute cad_reroute_t;

/* dest_qids[i]: the queue id of the routes' destination index i. */
/* The channel whose routes these are (borrowed, as routes): requeued
 * messages then go through its character sets too (chan_route.h). */
struct cad_conf_channel;
void cad_reroute_set_channel(cad_reroute_t *r, const struct cad_conf_channel *cc);
int cad_reroute_new(cad_queue_t *q, const cad_routes_t *routes, const cad_hl7_limits_t *limits,
                    const uint16_t *dest_qids, size_t ndests, cad_reroute_t **out);
void cad_reroute_free(cad_reroute_t *r);
/* Destinations with lanes (lanes.h): fn(ud, i, p, len) gives the queue id
 * of the lane that output p/len for destination index i goes to (used
 * instead of dest_qids).  ud is borrowed, as the queue ids are. */
void cad_reroute_set_lanes(cad_reroute_t *r,
                           uint16_t (*fn)(void *ud, size_t i, const char *p, size_t len),
                           void *ud);

/* The driver (cad_dest_driver_t.deliver with impl = the rerouter; window 1). */
int cad_reroute_deliver(void *impl, const char *p, size_t len, uint64_t seq,
                        cad_deliver_done_cb done, void *ctx);

#endif
