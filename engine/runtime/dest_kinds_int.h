/* dest_kinds_int.h - the destination kinds, one adapter file each
 * (engine/runtime/dest_<kind>.c), listed in dest_kind.c. */
#ifndef CAD_DEST_KINDS_INT_H
#define CAD_DEST_KINDS_INT_H

#include "dest_kind.h"

extern const cad_dest_kind_t cad_dest_kind_file;     /* dest_file.c */
extern const cad_dest_kind_t cad_dest_kind_mllp;     /* dest_mllp.c */
extern const cad_dest_kind_t cad_dest_kind_sftp;     /* dest_sftp.c */
extern const cad_dest_kind_t cad_dest_kind_postgres; /* dest_postgres.c */
extern const cad_dest_kind_t cad_dest_kind_kafka;    /* dest_kafka.c */
extern const cad_dest_kind_t cad_dest_kind_http;     /* dest_http.c */

#endif
