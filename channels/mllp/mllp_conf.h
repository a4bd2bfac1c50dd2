/* mllp_conf.h - the configuration of MLLP: a destination (`type: mllp`) and
 * the listeners of an inbound channel.
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
 * An inbound channel's listener settings are the listener's own options
 * (mllp_listener.h), filled by cad_mllp_listen_conf; the engine sets host,
 * port and tls per listen address and hands the struct over as it is:
 *
 *   max_message_size: 4MiB      max_frame, 1KiB..1GiB
 *   idle_timeout: 300s          idle_timeout_ms, 0 (none) or 1s..7d
 *   frame_timeout: 30s          frame_timeout_ms, 100ms..1d
 *   max_connections: 0          1..1000000; 0 (the default) is chosen at
 *                               load: 4096, or what the open-files limit fits
 *
 * Strings and lists stored in the structs are owned by the configuration that
 * holds them.
 */
#ifndef CAD_MLLP_CONF_H
#define CAD_MLLP_CONF_H

#include <stdbool.h>

#include "cad_conf.h"
#include "mllp_listener.h"
#include "mllp_sender.h"
#include "transport.h"

typedef struct cad_mllp_dest_conf {
  cad_mllp_sender_opts_t sender; /* sender.tls stays NULL: built from `tls` */
  bool tls_enabled;              /* `tls:` was written (`tls: {}` = every default) */
  cad_tls_client_opts_t tls;     /* ca_file (NULL = the system's), cert_file + key_file */
} cad_mllp_dest_conf_t;

/* Keys of `type: mllp`, applied to a cad_mllp_dest_conf_t. */
extern const cad_conf_section_t cad_mllp_dest_conf;

/* Keys of an inbound MLLP channel's listeners, applied to a
 * cad_mllp_listener_opts_t (the keys sit beside the channel's own). */
extern const cad_conf_section_t cad_mllp_listen_conf;

#endif
