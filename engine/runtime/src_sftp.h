/* src_sftp.h - the SFTP source (`listen_sftp:` on a channel): see
 * src_sftp.c for what it does, what is kept where, and what may repeat
 * after a crash. */
#ifndef CAD_SRC_SFTP_H
#define CAD_SRC_SFTP_H

#include "source.h"

extern const cad_source_kind_t cad_source_sftp;

#endif
