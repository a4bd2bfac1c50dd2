/* config_admin.c - the top-level `admin:` section (config.h, cad_conf_admin_t).
 *
 * `listen:` is one numeric host:port; `tokens:` a list of {name, role, hash
 * | env}.  A token from the environment is hashed at load, so only hashes
 * are kept in memory either way.
 */
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "net_addr.h"

#define MAX_TOKENS 256
#define HASH_PREFIX "sha256:"

static const char *const roles[] = {"viewer", "analyst", "operator", "admin", NULL};
static const enum_arg_t role_arg = {roles, CAD_ROLE_VIEWER, "viewer, analyst, operator or admin"};
_Static_assert(sizeof(cad_role_t) == sizeof(int), "enum size");

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void check_token(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)key, (void)seen;
  cad_conf_token_t *t = obj;
  if (!t->hash_text == !t->env) {
    cad_conf_errf(r, map, "a token needs exactly one of 'hash' (\"sha256:...\") or 'env' %s",
                  r->where);
    return;
  }
  if (t->hash_text) {
    const char *h = t->hash_text;
    size_t pl = strlen(HASH_PREFIX);
    bool ok = strncmp(h, HASH_PREFIX, pl) == 0 && strlen(h) == pl + 64;
    for (size_t i = 0; ok && i < 32; i++) {
      int a = hexval(h[pl + 2 * i]), b = hexval(h[pl + 2 * i + 1]);
      ok = a >= 0 && b >= 0;
      if (ok) t->sha256[i] = (unsigned char)(a << 4 | b);
    }
    if (!ok)
      cad_conf_errf(r, cad_conf_key_node(map, "hash"),
                    "hash: expected \"sha256:\" and 64 hex digits (caduceus token new) %s",
                    r->where);
    return;
  }
  const char *val = getenv(t->env);
  if (!val || !*val) {
    cad_conf_errf(r, cad_conf_key_node(map, "env"),
                  "env: the environment variable '%s' is not set or empty %s", t->env, r->where);
    return;
  }
  unsigned int n = 0;
  if (EVP_Digest(val, strlen(val), t->sha256, &n, EVP_sha256(), NULL) != 1 || n != 32)
    *r->nomem = true;
}

static const conf_key_t token_keys[] = {
    {"name", CAD_CONF_TEXT, offsetof(cad_conf_token_t, name), K_REQUIRED, NULL, 0, 0, NULL,
     "the token's name (in logs)"},
    {"role", CAD_CONF_ENUM, offsetof(cad_conf_token_t, role), K_REQUIRED, NULL, 0, 0, &role_arg,
     "viewer, analyst, operator or admin"},
    {"hash", CAD_CONF_TEXT, offsetof(cad_conf_token_t, hash_text), 0, NULL, 0, 0, NULL,
     "the token's SHA-256, \"sha256:<64 hex>\""},
    {"env", CAD_CONF_TEXT, offsetof(cad_conf_token_t, env), 0, NULL, 0, 0, NULL,
     "an environment variable holding the token"},
};
static const conf_section_t token_section = {"token", token_keys, CAD_CONF_NKEYS(token_keys),
                                             check_token};

static void set_admin_listen(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                             const cad_yaml_node_t *v, void *obj) {
  cad_conf_admin_t *a = obj;
  char *s = cad__conf_scalar(L, k, key, v, "an address like 127.0.0.1:8765");
  if (!s) return;
  char host[INET6_ADDRSTRLEN], q[QBUF];
  int family, port;
  const char *why = cad_hostport_parse(s, true, host, sizeof host, &family, &port);
  if (why) {
    cad__conf_err_at(L, v, "%s: '%s': %s", k->name, cad__conf_quote(q, s, strlen(s)), why);
  } else {
    free(a->host);
    if (!(a->host = strdup(host))) L->nomem = true;
    a->port = port;
    a->pos = cad__conf_pos_of(v);
  }
  free(s);
}

static void set_tokens(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                       const cad_yaml_node_t *v, void *obj) {
  cad_conf_admin_t *a = obj;
  char d[QBUF + 2];
  if (v->type != CAD_YAML_SEQUENCE) {
    cad__conf_err_at(L, cad__conf_at(key, v), "%s: expected a list of {name, role, hash}, got %s",
                     k->name, cad__conf_describe(d, v));
    return;
  }
  if (v->n > MAX_TOKENS) {
    cad__conf_err_at(L, v, "%s: at most %d tokens", k->name, MAX_TOKENS);
    return;
  }
  a->tokens = calloc(v->n ? v->n : 1, sizeof *a->tokens);
  if (!a->tokens) {
    L->nomem = true;
    return;
  }
  a->ntokens = v->n;
  for (size_t i = 0; i < v->n; i++) {
    char where[64];
    snprintf(where, sizeof where, "in token %zu of admin", i + 1);
    cad__conf_apply_section(L, &token_section, NULL, v->items[i], &a->tokens[i], where);
    for (size_t j = 0; j < i; j++)
      if (a->tokens[i].name && a->tokens[j].name &&
          strcmp(a->tokens[i].name, a->tokens[j].name) == 0)
        cad__conf_err_at(L, v->items[i], "tokens: the name '%s' is used twice", a->tokens[i].name);
  }
}

static void check_admin(const cad_conf_report_t *r, const cad_yaml_node_t *key,
                        const cad_yaml_node_t *map, void *obj, const bool *seen) {
  (void)seen;
  cad_conf_admin_t *a = obj;
  if (!a->host) cad_conf_errf(r, key ? key : map, "admin: 'listen' is required");
}

static const conf_key_t admin_keys[] = {
    CUSTOM_KEY("listen", set_admin_listen, 0, "the address of the admin API, like 127.0.0.1:8765"),
    {"open_metrics", CAD_CONF_FLAG, offsetof(cad_conf_admin_t, open_metrics), 0, "false", 0, 0,
     NULL, "serve /metrics, /healthz and /readyz without a token"},
    CUSTOM_KEY("tokens", set_tokens, 0, "the API tokens and their roles"),
    {"tls", CAD_CONF_SECTION, offsetof(cad_conf_admin_t, tls), CAD_CONF_PRESENCE | CAD_CONF_NESTED,
     NULL, 0, 0, &cad_tls_server_conf, "HTTPS for the admin API"},
    {"ready_max_age", CAD_CONF_DURATION, offsetof(cad_conf_admin_t, ready_max_age_ms), K_ZERO_OK,
     "0", MS_SECOND, 30 * MS_DAY, NULL,
     "/readyz answers 503 when a destination's oldest waiting message is older (0: no limit)"},
};
static const conf_section_t admin_section = {"admin", admin_keys, CAD_CONF_NKEYS(admin_keys),
                                             check_admin};

void cad__conf_set_admin(loader_t *L, const conf_key_t *k, const cad_yaml_node_t *key,
                         const cad_yaml_node_t *v, void *obj) {
  (void)k;
  cad_config_t *c = obj;
  c->admin.enabled = true;
  cad__conf_apply_section(L, &admin_section, key, v, &c->admin, "in admin");
}

void cad__conf_admin_free(cad_conf_admin_t *a) {
  for (size_t i = 0; i < a->ntokens; i++) {
    free(a->tokens[i].name);
    free(a->tokens[i].hash_text);
    free(a->tokens[i].env);
  }
  free(a->tokens);
  free(a->host);
  cad_tls_server_opts_t *t = &a->tls.opts;
  free((void *)(uintptr_t)t->cert_file);
  free((void *)(uintptr_t)t->key_file);
  free((void *)(uintptr_t)t->ca_file);
  free((void *)(uintptr_t)t->ciphers);
  for (size_t j = 0; j < t->nallowed; j++) free((void *)(uintptr_t)t->allowed_clients[j]);
  free((void *)(uintptr_t)t->allowed_clients);
}
