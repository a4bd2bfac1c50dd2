/* cli_mllp.c - destination options shared by `send` and `replay`. */
#include "cli_mllp.h"

#include <stdlib.h>
#include <string.h>

#include "net_addr.h"

const char cad_cli_mllp_help[] =
    "  --to HOST:PORT          the listener (an IP address or a name; [v6]:port)\n"
    "  --timeout S             seconds to wait for a connection and for each ACK\n"
    "                          (default 10)\n"
    "  --tls                   use TLS (verifies the server certificate and name)\n"
    "  --ca FILE               CA certificates to verify the server with\n"
    "                          (default: the system's)\n"
    "  --cert FILE --key FILE  a client certificate, for mutual TLS\n"
    "  --server-name NAME      the name the server certificate must carry\n"
    "                          (default: HOST)\n"
    "  --insecure-no-verify    do not verify the server at all (testing only)\n";

void cad_cli_mllp_init(cad_cli_mllp_t *o) {
  memset(o, 0, sizeof *o);
  o->timeout_s = 10;
}

int cad_cli_mllp_arg(cad_cli_mllp_t *o, const char *cmd, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  const char **val = NULL;
  if (strcmp(a, "--tls") == 0) {
    o->tls = true;
    return 1;
  }
  if (strcmp(a, "--insecure-no-verify") == 0) {
    o->no_verify = true;
    return 1;
  }
  if (strcmp(a, "--to") == 0) val = &o->to;
  else if (strcmp(a, "--ca") == 0) val = &o->ca;
  else if (strcmp(a, "--cert") == 0) val = &o->cert;
  else if (strcmp(a, "--key") == 0) val = &o->key;
  else if (strcmp(a, "--server-name") == 0) val = &o->server_name;
  else if (strcmp(a, "--timeout") == 0) {
    char *end = NULL;
    if (*i + 1 >= argc || (o->timeout_s = strtod(argv[*i + 1], &end)) <= 0 || *end ||
        o->timeout_s > 86400) {
      fprintf(stderr, "caduceus %s: --timeout needs a number of seconds (0 < S <= 86400)\n", cmd);
      return -1;
    }
    (*i)++;
    return 1;
  } else return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "caduceus %s: %s needs a value\n", cmd, a);
    return -1;
  }
  *val = argv[++*i];
  return 1;
}

int cad_cli_parse_hostport(const char *s, char *host, size_t cap, int *port) {
  int family;
  return cad_hostport_parse(s, false, host, cap, &family, port) ? -1 : 0;
}

const char *cad_cli_mllp_check(cad_cli_mllp_t *o) {
  if (!o->to) return "--to HOST:PORT is required";
  if (cad_cli_parse_hostport(o->to, o->host, sizeof o->host, &o->port) != 0)
    return "--to: expected HOST:PORT, like 127.0.0.1:2575 or [::1]:2575";
  if (!o->tls && (o->ca || o->cert || o->key || o->server_name || o->no_verify))
    return "--ca, --cert, --key, --server-name and --insecure-no-verify need --tls";
  if (!o->cert != !o->key) return "--cert and --key go together";
  return NULL;
}

int cad_cli_mllp_tls(const cad_cli_mllp_t *o, cad_tls_ctx_t **ctx, char *err, size_t cap) {
  *ctx = NULL;
  if (!o->tls) return 0;
  cad_tls_client_opts_t to = {o->ca, o->cert, o->key, o->no_verify, NULL, CAD_TLS_V1_2};
  return cad_tls_client_ctx_new(&to, ctx, err, cap) != 0 ? -1 : 0;
}

void cad_cli_mllp_sender_opts(const cad_cli_mllp_t *o, cad_tls_ctx_t *ctx,
                              cad_mllp_sender_opts_t *so) {
  uint64_t ms = (uint64_t)(o->timeout_s * 1000.0);
  if (ms == 0) ms = 1;
  memset(so, 0, sizeof *so);
  so->host = o->host;
  so->port = o->port;
  so->connect_timeout_ms = ms;
  so->ack_timeout_ms = ms;
  so->ae_dead_letter = true; /* an AE/AR is an answer: report it, do not retry */
  so->ar_dead_letter = true;
  so->tls = ctx;
  so->server_name = o->server_name;
  so->verify_hostname = !o->no_verify;
}
