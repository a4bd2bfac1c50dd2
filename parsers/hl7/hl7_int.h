/* hl7_int.h - what the files of parsers/hl7 share and nobody else uses.
 *
 * Memory: everything grows in the message's arena (m->arena).
 */
#ifndef CAD_HL7_INT_H
#define CAD_HL7_INT_H

#include "hl7.h"

/* Room for at least one more segment in m->segs (the array moves: pointers
 * into it are stale afterwards).  0 or CAD_E_NOMEM. */
int cad__hl7_grow_segs(cad_hl7_msg_t *m, uint32_t extra);

#endif
