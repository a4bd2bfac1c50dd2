/* mllp_conf.h - the configuration of an MLLP destination (`type: mllp`).
 *
 * The channel kind declares its keys (parsers/base/cad_conf.h) over its own
 * struct; engine/config applies them to a destination's block, and the
 * engine builds the TLS context from `tls` and hands `sender` to
 * cad_mllp_sender_new (with sender.tls set to that context).
 *
 *   host, port                  the receiver (required)
 *   persistent: true            false: a connection per message
 *   connect_timeout: 10s, ack_timeout: 30s, idle_close: 0 (never)
 *   on_ae: retry, on_ar: dead_letter   (retry | dead_letter)
 *   new_control_id: false       a new MSH-10 for every attempt
 *   tls: { ca, cert, key, verify_hostname: true, server_name }
 *
 * Strings stored in the struct are owned by the configuration that holds it.
 */
#ifndef CAD_MLLP_CONF_H
#define CAD_MLLP_CONF_H

#include <stdbool.h>

#include "cad_conf.h"
#include "mllp_sender.h"
#include "transport.h"

typedef struct cad_mllp_dest_conf {
  cad_mllp_sender_opts_t sender; /* sender.tls stays NULL: built from `tls` */
  bool tls_enabled;              /* `tls:` was written (`tls: {}` = every default) */
  cad_tls_client_opts_t tls;     /* ca_file (NULL = the system's), cert_file + key_file */
} cad_mllp_dest_conf_t;

/* Keys of `type: mllp`, applied to a cad_mllp_dest_conf_t. */
extern const cad_conf_section_t cad_mllp_dest_conf;

#endif
