/* http_conf.c - the key tables of HTTP destinations and sources (http_conf.h). */
#include "http_conf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net_addr.h"

#define MS_SECOND UINT64_C(1000)
#define MS_HOUR (UINT64_C(3600) * MS_SECOND)
#define D(f) offsetof(cad_http_dest_conf_t, f)
#define FREE(p) free((void *)(uintptr_t)(p))

const char *cad_http_content_type_for(const char *format) {
  static const struct {
    const char *format, *type;
  } types[] = {{"er7", "x-application/hl7-v2+er7"},
               {"fhir", "application/fhir+json"},
               {"json", "application/json"},
               {"xml", "application/xml"}};
  if (!format) return types[0].type;
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    if (strcmp(format, types[i].format) == 0) return types[i].type;
  return NULL;
}

bool cad_http_status_valid(const char *s) {
  if (strlen(s) != 3 || s[0] < '1' || s[0] > '5') return false;
  if (s[1] == 'x' && s[2] == 'x') return true;
  return s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9';
}

bool cad_http_status_in(const char *const *list, size_t n, long status) {
  if (status < 100 || status > 599) return false;
  char d[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
               (char)('0' + status % 10), 0};
  for (size_t i = 0; i < n; i++) {
    const char *s = list[i];
    if (strlen(s) != 3 || s[0] != d[0]) continue;
    if ((s[1] == 'x' && s[2] == 'x') || (s[1] == d[1] && s[2] == d[2])) return true;
  }
  return false;
}

static void check_statuses(const cad_conf_report_t *r, const cad_yaml_node_t *map, const char *name,
                           const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!cad_http_status_valid(list[i]))
      cad_conf_errf(r, cad_conf_key_node(map, name),
                    "%s: '%.16s' is not an HTTP status (100..599) or class (4xx, 5xx) %s", name,
                    list[i], r->where);
}

static const cad_conf_section_t auth_conf, oauth_conf, tls_conf;

static void check_dest(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)seen;
  const cad_http_dest_conf_t *c = obj;
  if (c->url && strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0)
    cad_conf_errf(r, cad_conf_key_node(map, "url"), "url: expected an http:// or https:// URL %s",
                  r->where);
  for (size_t i = 0; i < c->nheaders; i++) {
    const char *h = c->headers[i], *colon = strchr(h, ':');
    bool ok = colon && colon > h;
    for (const char *p = h; ok && p < colon; p++)
      ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
           *p == '-' || *p == '_';
    for (const char *p = h; ok && *p; p++) ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
    if (!ok)
      cad_conf_errf(r, cad_conf_key_node(map, "headers"),
                    "headers: expected \"Name: value\" entries (a token, ':', printable text) %s",
                    r->where);
    else if (!strncasecmp(h, "authorization:", 14))
      cad_conf_errf(r, cad_conf_key_node(map, "headers"),
                    "headers: no Authorization header in the configuration %s; use 'auth' or "
                    "'oauth2', which read secrets from the environment",
                    r->where);
  }
  check_statuses(r, map, "retry_on", c->retry_on, c->nretry_on);
  check_statuses(r, map, "dead_letter_on", c->dead_letter_on, c->ndead_letter_on);
  if (c->oauth_enabled && c->token_url && strncmp(c->token_url, "http://", 7) != 0 &&
      strncmp(c->token_url, "https://", 8) != 0)
    cad_conf_errf(r, cad_conf_key_node(map, "oauth2"),
                  "oauth2: token_url: expected an http:// or https:// URL %s", r->where);
  if (c->auth_enabled && c->oauth_enabled)
    cad_conf_errf(r, cad_conf_key_node(map, "oauth2"),
                  "'auth' and 'oauth2' cannot both be set %s: choose one", r->where);
  if (c->auth_enabled) {
    bool bearer = c->bearer_env != NULL, user = c->basic_user_env != NULL,
         pass = c->basic_password_env != NULL;
    if (bearer == (user || pass) || user != pass)
      cad_conf_errf(r, cad_conf_key_node(map, "auth"),
                    "auth: expected either bearer_env, or basic_user_env with basic_password_env "
                    "%s",
                    r->where);
  }
  if (c->tls_enabled && (c->cert_file != NULL) != (c->key_file != NULL))
    cad_conf_errf(r, cad_conf_key_node(map, "tls"),
                  "'cert' and 'key' go together %s: a client certificate needs its key", r->where);
  if (c->tls_enabled && c->url && strncmp(c->url, "https://", 8) != 0)
    cad_conf_errf(r, cad_conf_key_node(map, "tls"), "'tls' needs an https:// url %s", r->where);
  (void)key;
}

static const cad_conf_key_t tls_keys[] = {
    {"ca", CAD_CONF_FILE, D(ca_file), 0, NULL, 0, 0, NULL,
     "the CAs the server's certificate must chain to (default: the system's)"},
    {"cert", CAD_CONF_FILE, D(cert_file), 0, NULL, 0, 0, NULL,
     "our client certificate, for servers that ask for one"},
    {"key", CAD_CONF_FILE, D(key_file), 0, NULL, 0, 0, NULL, "the key of the client certificate"},
    {"verify_hostname", CAD_CONF_FLAG, D(verify_hostname), 0, "true", 0, 0, NULL,
     "check that the server's certificate names the host"},
};
static const cad_conf_section_t tls_conf = {"tls", tls_keys, CAD_CONF_NKEYS(tls_keys), NULL};

static const cad_conf_key_t auth_keys[] = {
    {"bearer_env", CAD_CONF_TEXT, D(bearer_env), 0, NULL, 0, 0, NULL,
     "the environment variable holding a bearer token"},
    {"basic_user_env", CAD_CONF_TEXT, D(basic_user_env), 0, NULL, 0, 0, NULL,
     "the environment variable holding the basic-auth user"},
    {"basic_password_env", CAD_CONF_TEXT, D(basic_password_env), 0, NULL, 0, 0, NULL,
     "the environment variable holding the basic-auth password"},
};
static const cad_conf_section_t auth_conf = {"auth", auth_keys, CAD_CONF_NKEYS(auth_keys), NULL};

static const cad_conf_key_t oauth_keys[] = {
    {"token_url", CAD_CONF_TEXT, D(token_url), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the token endpoint (client-credentials grant)"},
    {"client_id", CAD_CONF_TEXT, D(client_id), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the client id"},
    {"client_secret_env", CAD_CONF_TEXT, D(client_secret_env), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the environment variable holding the client secret"},
    {"scope", CAD_CONF_TEXT, D(scope), 0, NULL, 0, 0, NULL, "the scopes asked for"},
    {"margin", CAD_CONF_DURATION, D(oauth_margin_ms), CAD_CONF_ZERO_OK, "60s", 1, MS_HOUR, NULL,
     "renew a token this long before it expires"},
};
static const cad_conf_section_t oauth_conf = {"oauth2", oauth_keys, CAD_CONF_NKEYS(oauth_keys),
                                              NULL};

static const char *const methods[] = {"POST", "PUT", NULL};
static const cad_conf_enum_t method_arg = {methods, CAD_HTTP_POST, "POST or PUT"};
_Static_assert(sizeof(cad_http_method_t) == sizeof(int), "stored as an int");

static const cad_conf_names_t header_names = {D(nheaders), "a header \"Name: value\""};
static const cad_conf_names_t retry_names = {D(nretry_on), "an HTTP status or class (5xx)"};
static const cad_conf_names_t dead_names = {D(ndead_letter_on), "an HTTP status or class (4xx)"};

static const cad_conf_key_t dest_keys[] = {
    {"url", CAD_CONF_URL, D(url), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the URL to send to (${HL7-path} references are filled per message, URL-encoded)"},
    {"method", CAD_CONF_ENUM, D(method), 0, "POST", 0, 0, &method_arg, "POST or PUT"},
    {"headers", CAD_CONF_NAMES, D(headers), 0, NULL, 1, 64, &header_names,
     "extra headers \"Name: value\" (${HL7-path} references allowed)"},
    {"content_type", CAD_CONF_TEXT, D(content_type), 0, NULL, 0, 0, NULL,
     "the Content-Type, default by format (er7: x-application/hl7-v2+er7)"},
    {"connect_timeout", CAD_CONF_DURATION, D(connect_timeout_ms), 0, "10s", 100, MS_HOUR, NULL,
     "the longest wait for a connection (TCP and TLS)"},
    {"timeout", CAD_CONF_DURATION, D(timeout_ms), 0, "30s", 100, MS_HOUR, NULL,
     "the longest wait for the whole request and its answer"},
    {"retry_on", CAD_CONF_NAMES, D(retry_on), 0, NULL, 1, 64, &retry_names,
     "the statuses retried (default 408, 429, 5xx)"},
    {"dead_letter_on", CAD_CONF_NAMES, D(dead_letter_on), 0, NULL, 1, 64, &dead_names,
     "the statuses given up at once (default 4xx)"},
    {"keep_body", CAD_CONF_SIZE, D(keep_body), CAD_CONF_ZERO_OK, "4KiB", 1, 1 << 20, NULL,
     "bytes of each answer's body kept"},
    {"tls", CAD_CONF_SECTION, D(tls_enabled), CAD_CONF_PRESENCE, NULL, 0, 0, &tls_conf,
     "HTTPS settings"},
    {"auth", CAD_CONF_SECTION, D(auth_enabled), CAD_CONF_PRESENCE, NULL, 0, 0, &auth_conf,
     "bearer or basic credentials from the environment"},
    {"oauth2", CAD_CONF_SECTION, D(oauth_enabled), CAD_CONF_PRESENCE, NULL, 0, 0, &oauth_conf,
     "OAuth2 client credentials"},
};

const cad_conf_section_t cad_http_dest_conf = {"destination", dest_keys, CAD_CONF_NKEYS(dest_keys),
                                               check_dest};

static void free_list(const char *const *l, size_t n) {
  for (size_t i = 0; i < n; i++) FREE(l[i]);
  FREE(l);
}

void cad_http_dest_conf_free(cad_http_dest_conf_t *c) {
  FREE(c->url);
  free_list(c->headers, c->nheaders);
  FREE(c->content_type);
  free_list(c->retry_on, c->nretry_on);
  free_list(c->dead_letter_on, c->ndead_letter_on);
  FREE(c->ca_file);
  FREE(c->cert_file);
  FREE(c->key_file);
  FREE(c->bearer_env);
  FREE(c->basic_user_env);
  FREE(c->basic_password_env);
  FREE(c->token_url);
  FREE(c->client_id);
  FREE(c->client_secret_env);
  FREE(c->scope);
}

/* ---- the source -------------------------------------------------------- */

#define L(f) offsetof(cad_http_listen_conf_t, f)

static void check_listen(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)key, (void)seen;
  const cad_http_listen_conf_t *c = obj;
  char host[64];
  int fam, port;
  const char *why =
      c->listen ? cad_hostport_parse(c->listen, true, host, sizeof host, &fam, &port) : NULL;
  if (why) cad_conf_errf(r, cad_conf_key_node(map, "listen"), "listen: %s %s", why, r->where);
  if (c->path && c->path[0] != '/')
    cad_conf_errf(r, cad_conf_key_node(map, "path"), "path: expected a path starting with '/' %s",
                  r->where);
  for (size_t i = 0; i < c->nallow; i++) {
    cad_cidr_t cidr;
    const char *w = cad_cidr_parse_why(c->allow[i], &cidr);
    if (w)
      cad_conf_errf(r, cad_conf_key_node(map, "allow"), "allow: '%.64s': %s %s", c->allow[i], w,
                    r->where);
  }
}

static const cad_conf_names_t allow_names = {L(nallow), "an address range like 10.0.0.0/8"};

static const cad_conf_key_t listen_keys[] = {
    {"listen", CAD_CONF_TEXT, L(listen), CAD_CONF_REQUIRED, NULL, 0, 0, NULL,
     "the address to accept HTTP requests on, like 127.0.0.1:8080"},
    {"path", CAD_CONF_TEXT, L(path), 0, "/hl7", 0, 0, NULL, "the path messages are POSTed to"},
    {"max_body", CAD_CONF_SIZE, L(max_body), 0, "4MiB", 1024, (uint64_t)1 << 30, NULL,
     "the largest message accepted (larger: 413)"},
    {"tls", CAD_CONF_SECTION, L(tls), CAD_CONF_PRESENCE | CAD_CONF_NESTED, NULL, 0, 0,
     &cad_tls_server_conf, "HTTPS"},
    {"allow", CAD_CONF_NAMES, L(allow), 0, NULL, 1, 256, &allow_names,
     "the client addresses accepted (CIDR)"},
};

const cad_conf_section_t cad_http_listen_conf = {"listen_http", listen_keys,
                                                 CAD_CONF_NKEYS(listen_keys), check_listen};

void cad_http_listen_conf_free(cad_http_listen_conf_t *c) {
  FREE(c->listen);
  FREE(c->path);
  cad_tls_server_opts_t *t = &c->tls.opts;
  FREE(t->cert_file);
  FREE(t->key_file);
  FREE(t->ca_file);
  FREE(t->ciphers);
  free_list(t->allowed_clients, t->nallowed);
  free_list(c->allow, c->nallow);
}
