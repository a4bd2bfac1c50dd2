/* sftp_conf.h - the configuration of SFTP: a channel's `listen_sftp:` and
 * the `type: sftp` destination.
 *
 *   listen_sftp:                      # on a channel
 *     host: sftp.example.org          # DNS name or address
 *     port: 22
 *     user: caduceus
 *     known_hosts: known_hosts        # required: the server's key is checked
 *     key: id_ed25519                 # a private key file ...
 *     passphrase_env: SFTP_KEY_PASS   #   ... its passphrase from this variable
 *     password_env: SFTP_PASSWORD     # or a password from this variable
 *     timeout: 30s                    # connect and every wait for the server
 *     dir: /outbound                  # the remote folder polled
 *     pattern: "*.hl7"
 *     poll: 30s
 *     after: delete                   # delete | move (to move_to)
 *     move_to: /outbound/done
 *     spool: var/sftp-lab             # local copies (default <data_dir>/sftp/<channel>)
 *     format: auto                    # auto | er7 | mllp
 *
 *   destinations:
 *     lab-sftp:
 *       type: sftp
 *       host, port, user, known_hosts, key, passphrase_env, password_env, timeout
 *       dir: /inbound                 # the remote folder written to
 *       name: "${MSH-10}.hl7"         # as the file destination's
 *       mode: 0600
 *       batch: { max_messages: 1000, max_age: 1m }   # batch files instead
 *       stage_dir: var/sftp-out       # where batches are made (with batch)
 *
 * Strings stored in the structs are owned by the configuration that holds
 * them.
 */
#ifndef CAD_SFTP_CONF_H
#define CAD_SFTP_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "cad_conf.h"
#include "file_batch.h"
#include "sftp_conn.h"

typedef struct cad_sftp_dest_opts {
  cad_sftp_opts_t conn;
  const char *dir;       /* remote folder */
  const char *name_tmpl; /* default "${MSH-10}.hl7" */
  uint32_t mode;         /* default 0600 */
  /* `batch:` (as the file destination's): batch files are made in the
   * local `stage_dir`, then uploaded (temporary name, rename) and removed. */
  cad_file_batch_opts_t batch;
  const char *stage_dir;
} cad_sftp_dest_opts_t;

enum { CAD_SFTP_AFTER_DELETE = 0, CAD_SFTP_AFTER_MOVE = 1 };

typedef struct cad_sftp_source_opts {
  bool enabled; /* first: `listen_sftp:` was written (CAD_CONF_PRESENCE) */
  cad_sftp_opts_t conn;
  const char *dir;     /* remote folder */
  const char *pattern; /* default "*" */
  uint64_t poll_ms;    /* default 30000 */
  int after;           /* CAD_SFTP_AFTER_* */
  const char *move_to; /* remote folder, with after: move */
  const char *spool;   /* local folder; NULL = <data_dir>/sftp/<channel> */
  int format;          /* cad_hl7_stream_format_t */
} cad_sftp_source_opts_t;

extern const cad_conf_section_t cad_sftp_dest_conf;
extern const cad_conf_section_t cad_sftp_source_conf;

#endif
