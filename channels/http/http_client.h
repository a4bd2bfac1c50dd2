/* http_client.h - the HTTP destination: messages POSTed (or PUT) to a URL
 * with libcurl, on the engine's libuv loop.
 *
 * libcurl's multi-socket interface is driven by the loop: curl tells which
 * sockets to watch (a uv_poll each) and when to wake it (one uv_timer), and
 * the loop calls curl_multi_socket_action; nothing here blocks the loop
 * (name lookups use curl's threaded resolver).  One multi handle per
 * destination keeps its connections alive between messages.
 *
 * One message at a time (window 1): the next is handed over once the answer
 * to the last has been reported.  The multi handle could run N transfers at
 * once; ordered parallel lanes would give each lane its own request and
 * report completions in hand-over order (see docs/http.md).
 *
 * Outcome of one message (cad_http_classify):
 *   2xx                              delivered
 *   a status in retry_on             retry (default 408, 429, 5xx)
 *   a status in dead_letter_on       dead letter (default 4xx)
 *   any other status (1xx, 3xx, ...) retry
 *   connection refused, DNS, TLS, timeout, reset: retry
 * A 429 or 503 with Retry-After (seconds or an HTTP date, capped at 1 h)
 * holds the next request to this destination until then, whatever the
 * worker's backoff says.  The detail given back is PHI-free: "HTTP 503
 * Service Unavailable" (+ "; retry after 5s"), or curl's error text.
 *
 * OAuth2 client credentials: before a request the token is fetched (POST
 * token_url, grant_type=client_credentials, client id and secret as HTTP
 * basic credentials) when none is held or it expires within the margin; a
 * 401 answer drops the token and the request is sent once more with a new
 * one.  A token endpoint that fails makes the message a retry.
 *
 * Memory: the destination owns its curl handles, polls, timer, secrets
 * (wiped on close) and the answer it keeps (status, Content-Type, Location,
 * Retry-After, and at most keep_body bytes of body; the rest is read and
 * dropped, so a hostile server cannot grow memory).  The body given to
 * cad_http_dest_send is borrowed until its callback.  Loop thread only.
 */
#ifndef CAD_HTTP_CLIENT_H
#define CAD_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cad_mem.h"
#include "hl7.h"
#include "http_conf.h"

enum { CAD_HTTP_OK = 0, CAD_HTTP_RETRY = 1, CAD_HTTP_FAIL = 2 };

/* The outcome of an answer with `status` under conf c's lists. */
int cad_http_classify(const cad_http_dest_conf_t *c, long status);

/* Retry-After's value: delta-seconds or an HTTP date (now_s: the time now,
 * seconds since the epoch).  Milliseconds to wait, capped at 1 hour, or -1
 * when the value is not valid. */
int64_t cad_http_retry_after(const char *v, size_t len, int64_t now_s);

/* An OAuth2 token response (JSON): access_token into tok (NUL-terminated,
 * cap bytes), expires_in seconds into *expires_s (3600 when absent).
 * 0, or CAD_E_INVAL (not JSON, no token, token too long or not printable,
 * token_type other than bearer). */
int cad_http_oauth_parse(const char *body, size_t len, char *tok, size_t cap, int64_t *expires_s);

/* A template with ${HL7-path} references (a URL, a header value). */
typedef struct cad_http_tmpl cad_http_tmpl_t;
/* Compile t.  0 or CAD_E_INVAL (reason in err) / CAD_E_NOMEM. */
int cad_http_tmpl_compile(const char *t, cad_http_tmpl_t **out, char *err, size_t cap);
/* Whether it has references (a message must be parsed to fill it). */
bool cad_http_tmpl_has_refs(const cad_http_tmpl_t *t);
/* Fill it from m (NULL: references give nothing): url_encode percent-
 * encodes every byte of a value but A-Z a-z 0-9 - . _ ~ ; otherwise control
 * bytes become ' '.  A malloc'd string, or NULL (no memory). */
char *cad_http_tmpl_render(const cad_http_tmpl_t *t, const cad_hl7_msg_t *m, bool url_encode);
void cad_http_tmpl_free(cad_http_tmpl_t *t);

typedef struct cad_http_dest cad_http_dest_t;

/* outcome: CAD_HTTP_OK / RETRY / FAIL; detail PHI-free, valid for the call. */
typedef void (*cad_http_done_cb)(void *arg, int outcome, const char *detail);

/* Open: compile the templates, read the secrets from the environment (a
 * variable that is not set is an error), set up curl.  content_type is
 * copied.  0, or a negative error with the reason in err. */
int cad_http_dest_open(uv_loop_t *loop, const cad_http_dest_conf_t *c, const char *content_type,
                       cad_http_dest_t **out, char *err, size_t cap);
/* Whether the URL or a header reads message fields. */
bool cad_http_dest_needs_msg(const cad_http_dest_t *d);
/* Send body/len; m (may be NULL; used during the call only) fills the
 * templates.  0 (cb runs later, exactly once) or CAD_E_STATE (a request is
 * in flight, or closing) / CAD_E_NOMEM (cb never runs). */
int cad_http_dest_send(cad_http_dest_t *d, const cad_hl7_msg_t *m, const char *body, size_t len,
                       cad_http_done_cb cb, void *arg);

/* The last answer kept (borrowed until the next send). */
typedef struct cad_http_answer {
  long status;                                       /* 0 = none (a connection error) */
  const char *content_type, *location, *retry_after; /* "" when absent */
  const char *body;
  size_t body_len;
  bool body_cut; /* more came than keep_body */
} cad_http_answer_t;
void cad_http_dest_answer(const cad_http_dest_t *d, cad_http_answer_t *out);

/* Close: a request in flight is answered RETRY ("closing"), then the state
 * is freed once libuv has closed its handles. */
void cad_http_dest_close(cad_http_dest_t *d);

#endif
