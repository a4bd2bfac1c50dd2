/* http_conf.h - the configuration of HTTP: a destination (`type: http`) and
 * a channel's HTTP source (`listen_http:`).
 *
 * Declared as key tables (parsers/base/cad_conf.h) over the kind's own
 * structs; engine/config applies them, so every mistake is reported with
 * file:line:column.  Secrets are never in the file: `auth:` and `oauth2:`
 * name environment variables, read when the destination opens.
 *
 * A destination:
 *   type: http
 *   url: "https://fhir.example.org/hl7/${MSH-4}"  # ${HL7-path}: URL-encoded values
 *   method: POST                   # POST | PUT
 *   headers: ["X-Source: caduceus", "X-Msg: ${MSH-10}"]   # "Name: value template"
 *   content_type: ...              # default from the destination's format (er7:
 *                                  # x-application/hl7-v2+er7)
 *   connect_timeout: 10s           # TCP + TLS
 *   timeout: 30s                   # the whole request, answer included
 *   retry_on: [408, 429, 5xx]      # statuses retried (connection errors and
 *                                  # timeouts always are)
 *   dead_letter_on: [4xx]          # statuses given up at once; others retried
 *   keep_body: 4KiB                # of each answer kept (logged at debug)
 *   tls: { ca, cert, key, verify_hostname: true }  # as an MLLP destination's
 *   auth: { bearer_env: NAME }  or  { basic_user_env: U, basic_password_env: P }
 *   oauth2: { token_url, client_id, client_secret_env, scope, margin: 60s }
 *
 * A channel's HTTP source:
 *   listen_http:
 *     listen: "127.0.0.1:8080"     # numeric host:port, required
 *     path: /hl7                   # the one path messages are POSTed to
 *     max_body: 4MiB               # over it: 413
 *     tls: { cert, key, ca, require_client_cert, allowed_clients, ... }
 *     allow: [ 10.0.0.0/8 ]        # client addresses accepted (others: 403)
 *
 * Strings and lists stored in the structs are owned by the configuration
 * (freed with cad_http_dest_conf_free / cad_http_listen_conf_free).
 */
#ifndef CAD_HTTP_CONF_H
#define CAD_HTTP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cad_conf.h"
#include "tls_conf.h"

typedef enum { CAD_HTTP_POST = 0, CAD_HTTP_PUT } cad_http_method_t;

typedef struct cad_http_dest_conf {
  const char *url; /* template: ${HL7-path} references substituted URL-encoded */
  cad_http_method_t method;
  const char *const *headers; /* "Name: value template", nheaders */
  size_t nheaders;
  const char *content_type; /* NULL = by format (er7 unless the format says) */
  uint64_t connect_timeout_ms, timeout_ms;
  const char *const *retry_on; /* "429", "5xx", ... nretry_on (default 408, 429, 5xx) */
  size_t nretry_on;
  const char *const *dead_letter_on; /* ndead_letter_on (default 4xx) */
  size_t ndead_letter_on;
  size_t keep_body; /* bytes of an answer kept, default 4 KiB */
  bool tls_enabled;
  const char *ca_file, *cert_file, *key_file;
  bool verify_hostname;
  bool auth_enabled;
  const char *bearer_env, *basic_user_env, *basic_password_env;
  bool oauth_enabled;
  const char *token_url, *client_id, *client_secret_env, *scope;
  uint64_t oauth_margin_ms;
} cad_http_dest_conf_t;

extern const cad_conf_section_t cad_http_dest_conf;
void cad_http_dest_conf_free(cad_http_dest_conf_t *c);

typedef struct cad_http_listen_conf {
  bool enabled; /* first: `listen_http:` was written (CAD_CONF_PRESENCE) */
  const char *listen;
  const char *path;
  size_t max_body;
  cad_tls_server_conf_t tls;
  const char *const *allow; /* CIDR texts, checked at load; nallow */
  size_t nallow;
} cad_http_listen_conf_t;

extern const cad_conf_section_t cad_http_listen_conf;
void cad_http_listen_conf_free(cad_http_listen_conf_t *c);

/* The Content-Type of a payload format by its name ("er7", "fhir", "json",
 * "xml"; NULL = er7): x-application/hl7-v2+er7, application/fhir+json,
 * application/json, application/xml; NULL for an unknown name. */
const char *cad_http_content_type_for(const char *format);

/* Status lists: "429", "5xx" (a class).  Whether `status` is in the list. */
bool cad_http_status_in(const char *const *list, size_t n, long status);
/* Whether `s` is a valid entry ("100".."599" or "1xx".."5xx"). */
bool cad_http_status_valid(const char *s);

#endif
