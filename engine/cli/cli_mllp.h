/* cli_mllp.h - what `caduceus send` and `caduceus replay` share: the
 * destination options (--to, --timeout, TLS) and building an MLLP sender
 * (channels/mllp/mllp_sender.h) from them.
 *
 * Memory: the option strings point into argv (borrowed for the process'
 * life); host is copied into the struct.  cad_cli_mllp_tls() gives a TLS
 * context the caller unrefs (cad_tls_ctx_unref) after its senders are closed.
 */
#ifndef CAD_CLI_MLLP_H
#define CAD_CLI_MLLP_H

#include <stdbool.h>
#include <stdio.h>

#include "mllp_sender.h"
#include "transport.h"

typedef struct cad_cli_mllp {
  const char *to, *ca, *cert, *key, *server_name;
  bool tls, no_verify;
  double timeout_s; /* connect and ACK timeout, default 10 */
  char host[256];   /* from --to, after cad_cli_mllp_check */
  int port;
} cad_cli_mllp_t;

/* The help lines of these options (ends with a newline). */
extern const char cad_cli_mllp_help[];

void cad_cli_mllp_init(cad_cli_mllp_t *o);
/* Try argv[*i] as one of these options, taking its value (advances *i).
 * Returns 1 when it was one, 0 when it is not one of ours, -1 on a usage
 * error (printed to stderr as "caduceus CMD: ..."). */
int cad_cli_mllp_arg(cad_cli_mllp_t *o, const char *cmd, int argc, char **argv, int *i);
/* After parsing: NULL when the options hold together, else why not. */
const char *cad_cli_mllp_check(cad_cli_mllp_t *o);
/* "host:port" or "[v6]:port" into host (copied into buf) and port: 0 or -1. */
int cad_cli_parse_hostport(const char *s, char *host, size_t cap, int *port);
/* The TLS context (NULL without --tls): 0, or -1 with the reason in err. */
int cad_cli_mllp_tls(const cad_cli_mllp_t *o, cad_tls_ctx_t **ctx, char *err, size_t cap);
/* Sender options for one-message-at-a-time CLI use: AE and AR are answers
 * (FAIL, reported, not retried by the sender); timeouts from --timeout. */
void cad_cli_mllp_sender_opts(const cad_cli_mllp_t *o, cad_tls_ctx_t *ctx,
                              cad_mllp_sender_opts_t *so);

#endif
