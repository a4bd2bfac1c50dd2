/* tls_conf.h - the configuration of a TLS listener (a channel's `tls:`).
 *
 * Declared here, beside the options it fills (cad_tls_server_opts_t), as a
 * key table (parsers/base/cad_conf.h) that engine/config applies:
 *
 *   tls:
 *     cert: server.crt  key: server.key   # required, PEM
 *     ca: clients-ca.crt                  # CAs client certificates chain to
 *     require_client_cert: false          # mutual TLS (needs ca)
 *     allowed_clients: [ lab-analyzer-1 ] # subject CN or SAN (needs ca)
 *     ciphers: "ECDHE+AESGCM"             # TLS 1.2 cipher list
 *     min_version: "1.2"                  # 1.2 | 1.3
 *
 * Strings stored in the struct are owned by the configuration that holds it.
 */
#ifndef CAD_TLS_CONF_H
#define CAD_TLS_CONF_H

#include <stdbool.h>

#include "cad_conf.h"
#include "transport.h"

typedef struct cad_tls_server_conf {
  bool enabled; /* first: `tls:` was written (CAD_CONF_PRESENCE) */
  cad_tls_server_opts_t opts;
} cad_tls_server_conf_t;

/* Keys of a listener's `tls:`, applied to a cad_tls_server_conf_t. */
extern const cad_conf_section_t cad_tls_server_conf;

#endif
