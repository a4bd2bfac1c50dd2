/* net_addr.h - the one parser of network addresses in configurations and
 * command lines: "host:port" / "[v6]:port", and client address ranges
 * ("10.0.0.0/8").  Each returns NULL or a short reason that a caller can put
 * after "file:line:col: key:" or a command-line error.  Nothing allocates;
 * outputs are the caller's.  (cad_cidr_t and cad_cidr_match are in
 * transport.h, which includes this header.) */
#ifndef CAD_NET_ADDR_H
#define CAD_NET_ADDR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cad_cidr {
  int family;             /* AF_INET or AF_INET6 */
  unsigned char addr[16]; /* network bytes (first 4 for IPv4) */
  int prefix;             /* 0..32 or 0..128 */
} cad_cidr_t;

/* "127.0.0.1:2575", "[::1]:2575", and with numeric false also
 * "ehr.example:2575".  host receives the host (numeric: in inet_ntop's
 * canonical form), *family AF_INET / AF_INET6 (AF_UNSPEC for a name), *port
 * 1..65535.  NULL, or why `s` is wrong. */
const char *cad_hostport_parse(const char *s, bool numeric, char *host, size_t hcap, int *family,
                               int *port);

/* "10.0.0.0/8", "127.0.0.1" (= /32), "::1", "fd00::/8".  Host bits beyond
 * the prefix are ignored.  NULL, or why `s` is wrong. */
const char *cad_cidr_parse_why(const char *s, cad_cidr_t *out);

#endif
