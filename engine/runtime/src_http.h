/* src_http.h - the `listen_http:` source kind (src_http.c, listed in
 * source.c), and the mapping of an ACK to an HTTP status, for tests. */
#ifndef CAD_SRC_HTTP_H
#define CAD_SRC_HTTP_H

#include <stddef.h>

#include "source.h"

extern const cad_source_kind_t cad__source_http;

/* The HTTP status answering a request whose ACK is ack/len (no MLLP
 * framing): 200 for AA/CA, 422 for AR/CR, 503 for AE/CE, 500 when there
 * is no ACK or no MSA-1. */
int cad__src_http_status(const char *ack, size_t len);

#endif
