/* file_conf.h - the configuration of a file destination (`type: file`).
 *
 * The channel kind declares its keys (parsers/base/cad_conf.h) over its own
 * options struct, cad_file_dest_opts_t; engine/config applies them to a
 * destination's block and hands the struct to cad_file_dest_open as it is.
 *
 *   dir:    one file per message in this directory      (or)
 *   append: every message appended to this one file
 *   name:   with dir, the file name template, default "${MSH-10}.hl7"
 *   mode: 0600, dir_mode: 0700   permissions of created files / directories
 *
 * Strings stored in the struct are owned by the configuration that holds it.
 */
#ifndef CAD_FILE_CONF_H
#define CAD_FILE_CONF_H

#include "cad_conf.h"
#include "file_dest.h"

/* Keys of `type: file`, applied to a cad_file_dest_opts_t. */
extern const cad_conf_section_t cad_file_dest_conf;
/* Keys of `batch:` (file_batch.h), applied to a cad_file_batch_opts_t; the
 * sftp destination takes the same. */
extern const cad_conf_section_t cad_file_batch_conf;

#endif
