/* net_addr.c - host:port and address ranges (net_addr.h). */
#include "net_addr.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static const char *parse_port(const char *p, int *port) {
  long v = 0;
  if (!*p) return "the port is missing, like 127.0.0.1:2575";
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return "the port must be a number from 1 to 65535";
    v = v * 10 + (*p - '0');
    if (v > 65535) return "the port must be a number from 1 to 65535";
  }
  if (v < 1) return "the port must be a number from 1 to 65535";
  *port = (int)v;
  return NULL;
}

const char *cad_hostport_parse(const char *s, bool numeric, char *host, size_t hcap, int *family,
                               int *port) {
  const char *colon, *h = s;
  size_t hl;
  if (*s == '[') {
    const char *rb = strchr(s, ']');
    if (!rb) return "an IPv6 address needs a closing ']', like [::1]:2575";
    h = s + 1;
    hl = (size_t)(rb - h);
    if (rb[1] != ':') return "expected ':' and a port after ']', like [::1]:2575";
    colon = rb + 1;
    *family = AF_INET6;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return "expected host:port, like 127.0.0.1:2575";
    if (memchr(s, ':', (size_t)(colon - s)))
      return "an IPv6 address needs brackets, like [::1]:2575";
    hl = (size_t)(colon - s);
    *family = AF_INET;
  }
  char tmp[256];
  if (hl == 0) return "the host is missing: write 0.0.0.0 for every IPv4 interface";
  if (hl >= sizeof tmp || hl >= hcap) return "the host is too long";
  memcpy(tmp, h, hl);
  tmp[hl] = 0;
  unsigned char bin[16];
  if (inet_pton(*family, tmp, bin) == 1) {
    if (!inet_ntop(*family, bin, host, (socklen_t)hcap)) return "not a valid address";
  } else if (*family == AF_INET6) {
    return "not a valid IPv6 address";
  } else if (numeric) {
    return "the host must be a numeric IP address like 127.0.0.1 (names are not resolved)";
  } else {
    memcpy(host, tmp, hl + 1);
    *family = AF_UNSPEC;
  }
  return parse_port(colon + 1, port);
}

const char *cad_cidr_parse_why(const char *s, cad_cidr_t *out) {
  char host[64];
  const char *slash = strchr(s, '/');
  size_t hl = slash ? (size_t)(slash - s) : strlen(s);
  if (hl == 0 || hl >= sizeof host) return "expected an address or a range like 10.0.0.0/8";
  memcpy(host, s, hl);
  host[hl] = 0;
  cad_cidr_t c;
  memset(&c, 0, sizeof c);
  int max = 32;
  if (inet_pton(AF_INET, host, c.addr) == 1) {
    c.family = AF_INET;
  } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
    c.family = AF_INET6;
    max = 128;
  } else {
    return "not a numeric IP address (names are not allowed here)";
  }
  c.prefix = max;
  if (slash) {
    const char *p = slash + 1;
    int v = 0;
    if (!*p) return "the prefix length is missing after '/'";
    for (; *p; p++)
      if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > max)
        return max == 32 ? "the prefix length must be from 0 to 32"
                         : "the prefix length must be from 0 to 128";
    c.prefix = v;
  }
  *out = c;
  return NULL;
}
