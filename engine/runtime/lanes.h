/* lanes.h - the lane of a message in a destination with `lanes: N` and
 * `order_by: KEY` (docs/lanes.md).
 *
 * A destination with lanes keeps one FIFO per lane in the durable queue:
 * lane 0 is the destination's own queue (its name), lane k > 0 the queue
 * named "NAME#k" ('#' cannot appear in a configured name).  Each lane has its
 * own delivery worker and its own connection; messages in one lane go one
 * after the other, lanes go in parallel.
 *
 * The lane is chosen once, when the message is appended: the key is the
 * order_by template expanded on the message as the destination will get it
 * (after the routes' transforms), hashed with 64-bit FNV-1a, modulo N.  So
 * every message with the same key is in the same lane FIFO, and the lane is
 * written down by the record itself (its queue id): a restart reads each
 * lane back in order, nothing is computed again.  The hash is part of the
 * on-disk contract: it must not change between versions, or messages of one
 * key queued before an upgrade and after it could be in different lanes.
 *
 * order_by is either one HL7 path ("PID-3.1") or a template of several
 * ("${PID-3.1}^${PID-3.4}"): literal text and the raw value of each path's
 * first match.  A missing field gives an empty value (all such messages
 * share one lane).
 *
 * Memory: a compiled key owns its path list (freed by cad_lanekey_free);
 * cad_lanekey_lane parses into the caller's arena and keeps nothing.
 */
#ifndef CAD_LANES_H
#define CAD_LANES_H

#include <stddef.h>
#include <stdint.h>

#include "cad_mem.h"
#include "hl7.h"

#define CAD_LANES_MAX 64
#define CAD_LANEKEY_MAX_PARTS 16
#define CAD_LANEKEY_MAX_BYTES 256 /* key bytes hashed (a longer key is cut) */

typedef struct cad_lanekey cad_lanekey_t;

/* Compile `order_by`.  Returns 0, or CAD_E_INVAL with a PHI-free reason in
 * err (with the byte offset of the problem in *errpos when not NULL). */
int cad_lanekey_compile(const char *order_by, cad_lanekey_t **out, char *err, size_t errcap,
                        size_t *errpos);
void cad_lanekey_free(cad_lanekey_t *k);

/* The key of a parsed message, written into buf (cut at cap).  Returns its
 * length. */
size_t cad_lanekey_key(const cad_lanekey_t *k, const cad_hl7_msg_t *m, char *buf, size_t cap);

/* The lane of `key` among n (n >= 1): FNV-1a 64 of the bytes, modulo n. */
unsigned cad_lanekey_hash_lane(const char *key, size_t len, unsigned n);

/* The lane of the message p/len among n lanes: parsed in `a` (the caller
 * resets it), keyed, hashed.  A message that does not parse has the empty
 * key. */
unsigned cad_lanekey_lane(const cad_lanekey_t *k, const char *p, size_t len, unsigned n,
                          cad_arena_t *a);

/* The queue name of lane `lane` of destination `dest`: dest itself for lane
 * 0, "dest#lane" otherwise (NUL-terminated, cut at cap). */
void cad_lanes_qname(char *buf, size_t cap, const char *dest, unsigned lane);
/* The lane that queue name `qname` is of `dest` ("dest" -> 0, "dest#k" ->
 * k), or -1 when it is not one of dest's lanes. */
int cad_lanes_of(const char *qname, const char *dest);

#endif
