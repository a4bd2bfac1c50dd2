/* tls_conf.c - the key table of a TLS listener (tls_conf.h). */
#include "tls_conf.h"

#include <stddef.h>

#define OPT(f) offsetof(cad_tls_server_conf_t, opts.f)

static void check_tls_server(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                             const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)key;
  const cad_tls_server_conf_t *t = obj;
  bool ca = cad_conf_seen(&cad_tls_server_conf, seen, "ca");
  if (t->opts.require_client_cert && !ca)
    cad_conf_errf(
        r, cad_conf_key_node(map, "require_client_cert"),
        "require_client_cert needs 'ca' %s: the CA that client certificates must chain to",
        r->where);
  if (cad_conf_seen(&cad_tls_server_conf, seen, "allowed_clients") && !ca)
    cad_conf_errf(r, cad_conf_key_node(map, "allowed_clients"),
                  "allowed_clients needs 'ca' %s: the CA that client certificates must chain to",
                  r->where);
}

static const char *const tls_versions[] = {"1.2", "1.3", NULL};
static const cad_conf_enum_t tls_version = {tls_versions, CAD_TLS_V1_2, "1.2 or 1.3"};
_Static_assert(sizeof(cad_tls_version_t) == sizeof(int), "stored as an int");

static const cad_conf_names_t allowed = {OPT(nallowed), "a certificate name (subject CN or SAN)"};

static const cad_conf_key_t tls_server_keys[] = {
    {"cert", CAD_CONF_FILE, OPT(cert_file), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the server certificate, PEM"},
    {"key", CAD_CONF_FILE, OPT(key_file), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the server certificate's key, PEM"},
    {"ca", CAD_CONF_FILE, OPT(ca_file), 0, NULL, 0, 0, NULL,
     "the CAs client certificates must chain to"},
    {"require_client_cert", CAD_CONF_FLAG, OPT(require_client_cert), 0, "false", 0, 0, NULL,
     "mutual TLS: refuse clients without a valid certificate"},
    {"allowed_clients", CAD_CONF_NAMES, OPT(allowed_clients), 0, NULL, 1, 256, &allowed,
     "the client certificate names (subject CN or SAN) accepted"},
    {"ciphers", CAD_CONF_TEXT, OPT(ciphers), 0, NULL, 0, 0, NULL,
     "an OpenSSL cipher list like \"ECDHE+AESGCM\""},
    {"min_version", CAD_CONF_ENUM, OPT(min_version), 0, "1.2", 0, 0, &tls_version, "1.2 or 1.3"},
};

const cad_conf_section_t cad_tls_server_conf = {"tls", tls_server_keys,
                                                CAD_CONF_NKEYS(tls_server_keys), check_tls_server};
