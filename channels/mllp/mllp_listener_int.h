/* mllp_listener_int.h - pieces of the MLLP listener kept apart from the
 * connection machinery (mllp_limits.c).  Internal to channels/mllp. */
#ifndef CAD_MLLP_LISTENER_INT_H
#define CAD_MLLP_LISTENER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ack.h"
#include "cad_mem.h"
#include "hl7.h"

/* The soft RLIMIT_NOFILE, 0 when unlimited or unknown. */
uint64_t cad__mllp_soft_fd_limit(void);

/* "127.0.0.1:40122" or "[::1]:40122" ("?:0" when unknown). */
void cad__mllp_format_peer(uv_tcp_t *t, char *out, size_t cap);
/* True when the accepted socket `t` leaves fewer than `reserve` descriptors
 * free below `limit` (0 = no limit): it must be refused. */
bool cad__mllp_fd_reserve_touched(uv_tcp_t *t, uint64_t limit, uint64_t reserve);

/* Append to `out` the NAK (AR, ERR 102) of a frame holding a stray 0x1C:
 * built from its MSH when that can be read, else with standard delimiters
 * and an empty MSA-2; its own MSH-10 is "MLLPNAK<conn>N<seq>"; no 0x0B or
 * 0x1C in it.  Returns what cad_ack_build() returns (1 = written). */
int cad__mllp_stray_nak(cad_str_t frame, cad_ack_style_t style, uint64_t conn, uint64_t seq,
                        cad_buf_t *out);

#endif
