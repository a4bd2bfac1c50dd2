/* dir_conf.h - the configuration of a directory source (a channel's
 * `listen_dir:`), read by engine/runtime/src_dir.c.
 *
 *   listen_dir:
 *     dir: var/in            # watched directory (created 0700 if missing)
 *     pattern: "*.hl7"       # fnmatch glob on the file name, default "*"
 *     done_dir: var/in/done  # default <dir>/done
 *     error_dir: var/in/error  # default <dir>/error (with <name>.reason)
 *     stable: 1s             # take a file once unchanged this long; 0 = at once
 *     rescan: 5s             # the periodic rescan beside inotify
 *     format: auto           # auto | er7 | mllp (as `caduceus parse`)
 *
 * Strings stored in the struct are owned by the configuration that holds it.
 */
#ifndef CAD_DIR_CONF_H
#define CAD_DIR_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "cad_conf.h"

typedef struct cad_dir_source_opts {
  bool enabled;          /* first: `listen_dir:` was written (CAD_CONF_PRESENCE) */
  const char *dir;       /* the watched directory */
  const char *pattern;   /* glob, default "*" */
  const char *done_dir;  /* NULL = <dir>/done */
  const char *error_dir; /* NULL = <dir>/error */
  uint64_t stable_ms;    /* default 1000; 0 = take at once */
  uint64_t rescan_ms;    /* default 5000 */
  int format;            /* cad_hl7_stream_format_t: 0 auto, 1 er7, 2 mllp */
} cad_dir_source_opts_t;

/* Keys of `listen_dir:`, applied to a cad_dir_source_opts_t. */
extern const cad_conf_section_t cad_dir_source_conf;

#endif
