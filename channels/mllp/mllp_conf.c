/* mllp_conf.c - the key tables of MLLP destinations and listeners (mllp_conf.h). */
#include "mllp_conf.h"

#include <stddef.h>

#define MS_SECOND UINT64_C(1000)
#define MS_HOUR (UINT64_C(3600) * MS_SECOND)
#define MS_DAY (UINT64_C(86400) * MS_SECOND)
#define MAX_FRAME_HI ((uint64_t)1 << 30)

static const cad_conf_section_t tls_client_conf;

static void check_tls_client(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                             const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)key;
  (void)obj;
  bool cert = cad_conf_seen(&tls_client_conf, seen, "cert");
  if (cert != cad_conf_seen(&tls_client_conf, seen, "key"))
    cad_conf_errf(r, cad_conf_key_node(map, cert ? "cert" : "key"),
                  "'cert' and 'key' go together %s: a client certificate needs its key", r->where);
}

#define TLS_KEY(f) offsetof(cad_mllp_dest_conf_t, tls.f)
#define SENDER_KEY(f) offsetof(cad_mllp_dest_conf_t, sender.f)

static const cad_conf_key_t tls_client_keys[] = {
    {"ca", CAD_CONF_FILE, TLS_KEY(ca_file), 0, NULL, 0, 0, NULL,
     "the CAs the receiver's certificate must chain to (default: the system's)"},
    {"cert", CAD_CONF_FILE, TLS_KEY(cert_file), 0, NULL, 0, 0, NULL,
     "our client certificate, for receivers that ask for one"},
    {"key", CAD_CONF_FILE, TLS_KEY(key_file), 0, NULL, 0, 0, NULL,
     "the key of the client certificate"},
    {"verify_hostname", CAD_CONF_FLAG, SENDER_KEY(verify_hostname), 0, "true", 0, 0, NULL,
     "check that the receiver's certificate names the host"},
    {"server_name", CAD_CONF_HOST, SENDER_KEY(server_name), 0, NULL, 0, 0, NULL,
     "the name to verify and send (SNI), default the host"},
};
static const cad_conf_section_t tls_client_conf = {
    "tls", tls_client_keys, CAD_CONF_NKEYS(tls_client_keys), check_tls_client};

static const char *const nak_actions[] = {"retry", "dead_letter", NULL};
/* Stored as the sender's bool: dead_letter = true (CAD_CONF_AS_BOOL). */
static const cad_conf_enum_t nak_action = {nak_actions, 0, "retry or dead_letter"};

static const cad_conf_key_t mllp_keys[] = {
    {"host", CAD_CONF_HOST, SENDER_KEY(host), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the receiver's host name or IP address"},
    {"port", CAD_CONF_INT, SENDER_KEY(port), CAD_CONF_REQUIRED, NULL, 1, 65535, NULL,
     "the receiver's port"},
    {"persistent", CAD_CONF_FLAG, SENDER_KEY(per_message), CAD_CONF_INVERT, "true", 0, 0, NULL,
     "keep the connection open between messages"},
    {"connect_timeout", CAD_CONF_DURATION, SENDER_KEY(connect_timeout_ms), 0, "10s", 100, MS_HOUR,
     NULL, "the longest wait for a connection: DNS lookup, every address, TLS handshake"},
    {"ack_timeout", CAD_CONF_DURATION, SENDER_KEY(ack_timeout_ms), 0, "30s", 100, MS_HOUR, NULL,
     "the longest wait for an ACK"},
    {"idle_close", CAD_CONF_DURATION, SENDER_KEY(idle_close_ms), CAD_CONF_ZERO_OK, "0", MS_SECOND,
     7 * MS_DAY, NULL, "close a connection unused this long"},
    {"on_ae", CAD_CONF_ENUM, SENDER_KEY(ae_dead_letter), CAD_CONF_AS_BOOL, "retry", 0, 0,
     &nak_action, "retry or dead_letter"},
    {"on_ar", CAD_CONF_ENUM, SENDER_KEY(ar_dead_letter), CAD_CONF_AS_BOOL, "dead_letter", 0, 0,
     &nak_action, "retry or dead_letter"},
    {"new_control_id", CAD_CONF_FLAG, SENDER_KEY(new_control_id), 0, "false", 0, 0, NULL,
     "a new MSH-10 for every attempt"},
    {"tls", CAD_CONF_SECTION, offsetof(cad_mllp_dest_conf_t, tls_enabled), CAD_CONF_PRESENCE, NULL,
     0, 0, &tls_client_conf, "MLLP over TLS"},
};

const cad_conf_section_t cad_mllp_dest_conf = {"destination", mllp_keys, CAD_CONF_NKEYS(mllp_keys),
                                               NULL};

#define LISTEN_KEY(f) offsetof(cad_mllp_listener_opts_t, f)

static const cad_conf_key_t listen_keys[] = {
    {"max_message_size", CAD_CONF_SIZE, LISTEN_KEY(max_frame), 0, "4MiB", 1024, MAX_FRAME_HI, NULL,
     "the largest message accepted"},
    {"idle_timeout", CAD_CONF_DURATION, LISTEN_KEY(idle_timeout_ms), CAD_CONF_ZERO_OK, "300s",
     MS_SECOND, 7 * MS_DAY, NULL, "close a connection idle this long"},
    {"frame_timeout", CAD_CONF_DURATION, LISTEN_KEY(frame_timeout_ms), 0, "30s", 100, MS_DAY, NULL,
     "close a connection that stalls mid-message this long"},
    {"max_connections", CAD_CONF_U32, LISTEN_KEY(max_connections),
     CAD_CONF_ZERO_OK | CAD_CONF_ZERO_AUTO, "0", 1, 1000000, NULL,
     "connections accepted at once (0, the default: 4096, or what the open-files limit fits)"},
};

const cad_conf_section_t cad_mllp_listen_conf = {"channel", listen_keys,
                                                 CAD_CONF_NKEYS(listen_keys), NULL};
