/* mllp_sender_int.h - test seams of the MLLP sender (mllp_sender.h).  For
 * unit tests only: the engine never calls these.
 *
 * Both replace how a connect finds its addresses, so that what a loopback
 * machine cannot produce (a name with several addresses, a lookup that
 * hangs) can still be tested through the same code paths.  Call them after
 * cad_mllp_sender_new() and before the first deliver. */
#ifndef CAD_MLLP_SENDER_INT_H
#define CAD_MLLP_SENDER_INT_H

#include <netdb.h>
#include <sys/socket.h>
#include <uv.h>

#include "cad_mem.h"
#include "hl7.h"
#include "mllp_sender.h"

/* The signature and contract of uv_getaddrinfo: 0 and the callback exactly
 * once, later, on the loop; or an error and no callback.  The sender may
 * call uv_cancel() on the request, and ignores what it returns. */
typedef int (*cad__getaddrinfo_fn)(uv_loop_t *loop, uv_getaddrinfo_t *req, uv_getaddrinfo_cb cb,
                                   const char *node, const char *service,
                                   const struct addrinfo *hints);

/* Resolve the host with fn instead of uv_getaddrinfo (NULL: uv_getaddrinfo
 * again).  Ignored when the host is an IP literal or after set_addrs. */
void cad__mllp_sender_set_resolver(cad_mllp_sender_t *s, cad__getaddrinfo_fn fn);

/* Connect to these n addresses (AF_INET / AF_INET6, ports as given), in
 * this order, instead of resolving the host; the host still names the
 * destination in reasons and TLS.  They are copied.  Returns 0 or
 * CAD_E_INVAL (n outside 1..16, or another family). */
int cad__mllp_sender_set_addrs(cad_mllp_sender_t *s, const struct sockaddr_storage *addrs, int n);

/* How the sender reads a reply frame (check_ack), on its own so that it can
 * be tested and fuzzed without a connection.  `sent_ctl` is the MSH-10 the
 * message went out with; everything allocated comes from `a`. */
typedef enum {
  CAD__ACK_ACCEPT = 1,   /* AA / CA */
  CAD__ACK_ERROR,        /* AE / CE */
  CAD__ACK_REJECT,       /* AR / CR */
  CAD__ACK_UNPARSEABLE,  /* not an HL7 message */
  CAD__ACK_NOT_AN_ACK,   /* no MSA, or MSA-1 none of the six codes */
  CAD__ACK_OTHER_MESSAGE /* MSA-2 is not sent_ctl */
} cad__ack_verdict_t;

typedef struct cad__mllp_ack {
  cad__ack_verdict_t verdict;
  char code[3];     /* MSA-1 when it is one of the six codes, else "" */
  char reason[128]; /* AE/AR: the receiver's text (ERR-8, ERR-3.2, the
                        v2.3 ERR-1.4.2, else MSA-3), control bytes as spaces */
  char why[96];     /* the other verdicts: what was wrong (no message text) */
  char full[256];   /* AE/AR: every reason present, labelled: "MSA-3: ...; ERR-3:
                       CODE TEXT; ERR-8: ..." (ERR-1.4 when ERR-3 and ERR-8
                       are absent), decoded, control bytes as spaces, "" when none */
  char msa3[96];    /* AE/AR: MSA-3 decoded, "" when empty */
  char err[160];    /* AE/AR: the ERR segment alone: "CODE text: reason"
                        (ERR-3 or ERR-1.4, then ERR-8), "" without ERR */
} cad__mllp_ack_t;

/* Returns out->verdict. */
int cad__mllp_ack_read(cad_str_t frame, cad_str_t sent_ctl, cad_arena_t *a, cad__mllp_ack_t *out);

#endif
