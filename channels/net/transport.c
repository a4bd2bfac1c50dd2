/* transport.c - plain TCP or TLS (OpenSSL, memory BIOs) behind one
 * interface (transport.h).
 *
 * The TLS engine never touches the socket: bytes read by libuv go into the
 * read BIO, SSL_do_handshake / SSL_read / SSL_write run on them, and what
 * OpenSSL puts in the write BIO is taken out and handed to uv_write.  So the
 * loop never blocks on TLS, and the same read / write / close paths serve
 * both kinds of stream.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cad_error.h"

#define READ_BUF_SIZE (64 * 1024)
#define DEFAULT_HANDSHAKE_MS 30000u
#define DEFAULT_LINGER_MS 2000u
#define DEFAULT_DISCARD ((size_t)64 << 20)
#define MAX_ALLOWED 256

/* ---- TLS contexts ----------------------------------------------------- */

struct cad_tls_ctx {
  SSL_CTX *ctx;
  int refs;
  bool server;
  bool no_verify;
  char **allowed; /* owned, nallowed strings */
  size_t nallowed;
};

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t cap, const char *fmt, ...) {
  if (!err || !cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
}

/* The last OpenSSL error as a short text ("no start line"). */
static const char *ossl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown OpenSSL error";
}

static int check_readable(const char *what, const char *path, char *err, size_t cap) {
  if (access(path, R_OK) != 0) {
    int e = errno;
    set_err(err, cap, "cannot read %s '%s': %s", what, path, strerror(e));
    return CAD_E_IO;
  }
  return 0;
}

static cad_tls_ctx_t *ctx_alloc(const SSL_METHOD *m, bool server) {
  cad_tls_ctx_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ctx = SSL_CTX_new(m);
  if (!c->ctx) {
    free(c);
    return NULL;
  }
  c->refs = 1;
  c->server = server;
  SSL_CTX_set_app_data(c->ctx, c);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                  (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  return c;
}

static int common_setup(cad_tls_ctx_t *c, cad_tls_version_t minv, const char *ciphers, char *err,
                        size_t cap) {
  int v = minv == CAD_TLS_V1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (!SSL_CTX_set_min_proto_version(c->ctx, v)) {
    set_err(err, cap, "cannot set the minimum TLS version: %s", ossl_reason());
    return CAD_E_INVAL;
  }
  if (ciphers && !SSL_CTX_set_cipher_list(c->ctx, ciphers)) {
    set_err(err, cap, "ciphers '%s': no cipher in the list is usable", ciphers);
    return CAD_E_INVAL;
  }
  return 0;
}

static int load_cert_key(cad_tls_ctx_t *c, const char *cert, const char *key, char *err,
                         size_t cap) {
  int rc = check_readable("certificate", cert, err, cap);
  if (rc == 0) rc = check_readable("key", key, err, cap);
  if (rc) return rc;
  if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) {
    set_err(err, cap, "certificate '%s': %s", cert, ossl_reason());
    return CAD_E_INVAL;
  }
  if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      set_err(err, cap, "key '%s' does not belong to certificate '%s'", key, cert);
    else set_err(err, cap, "key '%s': %s", key, ossl_reason());
    return CAD_E_INVAL;
  }
  if (SSL_CTX_check_private_key(c->ctx) != 1) {
    set_err(err, cap, "key '%s' does not belong to certificate '%s'", key, cert);
    return CAD_E_INVAL;
  }
  return 0;
}

/* Does the certificate carry `name` as its subject CN, a DNS or IP SAN, or
 * an email address? */
static bool cert_has_name(X509 *cert, const char *name) {
  /* A client is named exactly: a wildcard certificate does not stand for a
   * specific allowed name. */
  if (X509_check_host(cert, name, strlen(name), X509_CHECK_FLAG_NO_WILDCARDS, NULL) == 1)
    return true;
  if (X509_check_ip_asc(cert, name, 0) == 1) return true;
  if (X509_check_email(cert, name, strlen(name), 0) == 1) return true;
  char cn[256];
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return n >= 0 && (size_t)n == strlen(name) && strcmp(cn, name) == 0;
}

/* The server's allow-list of client names, checked on the leaf certificate
 * once its chain is good: a refusal fails the handshake with an alert. */
static int verify_cb(int ok, X509_STORE_CTX *x) {
  if (!ok || X509_STORE_CTX_get_error_depth(x) != 0) return ok;
  SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
  cad_tls_ctx_t *c = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
  if (!c || !c->server || c->nallowed == 0) return 1;
  X509 *cert = X509_STORE_CTX_get_current_cert(x);
  for (size_t i = 0; cert && i < c->nallowed; i++)
    if (cert_has_name(cert, c->allowed[i])) return 1;
  X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

int cad_tls_server_ctx_new(const cad_tls_server_opts_t *o, cad_tls_ctx_t **out, char *err,
                           size_t errcap) {
  *out = NULL;
  if (!o->cert_file || !o->key_file) {
    set_err(err, errcap, "a TLS listener needs a certificate and a key");
    return CAD_E_INVAL;
  }
  if ((o->require_client_cert || o->nallowed) && !o->ca_file) {
    set_err(err, errcap, "client certificates need a CA file to be checked against");
    return CAD_E_INVAL;
  }
  if (o->nallowed > MAX_ALLOWED) {
    set_err(err, errcap, "at most %d allowed client names", MAX_ALLOWED);
    return CAD_E_INVAL;
  }
  ERR_clear_error();
  cad_tls_ctx_t *c = ctx_alloc(TLS_server_method(), true);
  if (!c) {
    set_err(err, errcap, "out of memory");
    return CAD_E_NOMEM;
  }
  int rc = common_setup(c, o->min_version, o->ciphers, err, errcap);
  if (rc == 0) rc = load_cert_key(c, o->cert_file, o->key_file, err, errcap);
  if (rc == 0 && o->ca_file) {
    rc = check_readable("CA file", o->ca_file, err, errcap);
    if (rc == 0 && SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
      set_err(err, errcap, "CA file '%s': %s", o->ca_file, ossl_reason());
      rc = CAD_E_INVAL;
    }
    if (rc == 0) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
      if (names) SSL_CTX_set_client_CA_list(c->ctx, names);
      /* An allow-list of client names needs a certificate to check: without
       * FAIL_IF_NO_PEER_CERT a client sending none would pass it. */
      int mode = SSL_VERIFY_PEER |
                 (o->require_client_cert || o->nallowed ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
      SSL_CTX_set_verify(c->ctx, mode, verify_cb);
    }
  }
  if (rc == 0) {
    static const unsigned char sid[] = "caduceus";
    SSL_CTX_set_session_id_context(c->ctx, sid, sizeof sid - 1);
  }
  if (rc == 0 && o->nallowed) {
    c->allowed = calloc(o->nallowed, sizeof *c->allowed);
    if (!c->allowed) rc = CAD_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < o->nallowed; i++, c->nallowed++)
      if (!(c->allowed[i] = strdup(o->allowed_clients[i]))) rc = CAD_E_NOMEM;
    if (rc) set_err(err, errcap, "out of memory");
  }
  ERR_clear_error();
  if (rc) {
    cad_tls_ctx_unref(c);
    return rc;
  }
  *out = c;
  return 0;
}

int cad_tls_client_ctx_new(const cad_tls_client_opts_t *o, cad_tls_ctx_t **out, char *err,
                           size_t errcap) {
  *out = NULL;
  if (!o->cert_file != !o->key_file) {
    set_err(err, errcap, "a client certificate needs both a certificate and a key");
    return CAD_E_INVAL;
  }
  ERR_clear_error();
  cad_tls_ctx_t *c = ctx_alloc(TLS_client_method(), false);
  if (!c) {
    set_err(err, errcap, "out of memory");
    return CAD_E_NOMEM;
  }
  c->no_verify = o->no_verify;
  int rc = common_setup(c, o->min_version, o->ciphers, err, errcap);
  if (rc == 0 && o->cert_file) rc = load_cert_key(c, o->cert_file, o->key_file, err, errcap);
  if (rc == 0 && o->ca_file) {
    rc = check_readable("CA file", o->ca_file, err, errcap);
    if (rc == 0 && SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1) {
      set_err(err, errcap, "CA file '%s': %s", o->ca_file, ossl_reason());
      rc = CAD_E_INVAL;
    }
  } else if (rc == 0 && !o->no_verify && SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
    set_err(err, errcap, "cannot load the system CA store: %s", ossl_reason());
    rc = CAD_E_IO;
  }
  if (rc == 0) SSL_CTX_set_verify(c->ctx, o->no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  ERR_clear_error();
  if (rc) {
    cad_tls_ctx_unref(c);
    return rc;
  }
  *out = c;
  return 0;
}

SSL_CTX *cad_tls_ctx_ssl(cad_tls_ctx_t *c) { return c->ctx; }

cad_tls_ctx_t *cad_tls_ctx_ref(cad_tls_ctx_t *c) {
  if (c) c->refs++;
  return c;
}

void cad_tls_ctx_unref(cad_tls_ctx_t *c) {
  if (!c || --c->refs > 0) return;
  SSL_CTX_free(c->ctx);
  for (size_t i = 0; i < c->nallowed; i++) free(c->allowed[i]);
  free(c->allowed);
  free(c);
}

const char *cad_tls_reason_name(cad_tls_reason_t r) {
  switch (r) {
    case CAD_TLS_OK: return "ok";
    case CAD_TLS_EXPIRED: return "certificate expired";
    case CAD_TLS_NOT_YET_VALID: return "certificate not yet valid";
    case CAD_TLS_UNKNOWN_CA: return "unknown CA";
    case CAD_TLS_HOSTNAME_MISMATCH: return "hostname mismatch";
    case CAD_TLS_NO_CLIENT_CERT: return "no client certificate";
    case CAD_TLS_CLIENT_NOT_ALLOWED: return "client not allowed";
    case CAD_TLS_BAD_CERT: return "bad certificate";
    case CAD_TLS_PEER_REJECTED: return "peer rejected our certificate";
    case CAD_TLS_VERSION: return "no common TLS version or cipher";
    case CAD_TLS_NOT_TLS: return "peer does not speak TLS";
    case CAD_TLS_PROTOCOL: return "TLS protocol error";
  }
  return "TLS error";
}

/* ---- TLS sessions ------------------------------------------------------- */

#define PLAIN_CHUNK (16 * 1024)

struct cad_tls_session {
  SSL *ssl;
  BIO *rbio, *wbio;   /* owned by ssl */
  cad_tls_ctx_t *ctx; /* referenced */
  cad_tls_session_cbs_t cbs;
  void *ud;
  bool ready;
  cad_tls_reason_t reason;
  char reason_text[192];
  char peer_name[128];
};

void cad_tls_session_set_reason(cad_tls_session_t *s, cad_tls_reason_t r, const char *detail) {
  s->reason = r;
  if (detail && *detail)
    snprintf(s->reason_text, sizeof s->reason_text, "%s (%s)", cad_tls_reason_name(r), detail);
  else snprintf(s->reason_text, sizeof s->reason_text, "%s", cad_tls_reason_name(r));
}

/* Why the handshake or a record failed: our verification of the peer first,
 * then the first SSL error of the queue (a peer's alert, a version clash). */
static void classify(cad_tls_session_t *s) {
  long vr = SSL_get_verify_result(s->ssl);
  unsigned long e = 0, first_ssl = 0;
  while ((e = ERR_get_error()) != 0)
    if (!first_ssl && ERR_GET_LIB(e) == ERR_LIB_SSL) first_ssl = e;
  int why = first_ssl ? ERR_GET_REASON(first_ssl) : 0;
  const char *text = first_ssl ? ERR_reason_error_string(first_ssl) : NULL;
  if (vr != X509_V_OK) {
    cad_tls_reason_t r;
    switch (vr) {
      case X509_V_ERR_CERT_HAS_EXPIRED: r = CAD_TLS_EXPIRED; break;
      case X509_V_ERR_CERT_NOT_YET_VALID: r = CAD_TLS_NOT_YET_VALID; break;
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      case X509_V_ERR_CERT_SIGNATURE_FAILURE: r = CAD_TLS_UNKNOWN_CA; break;
      case X509_V_ERR_HOSTNAME_MISMATCH:
      case X509_V_ERR_IP_ADDRESS_MISMATCH: r = CAD_TLS_HOSTNAME_MISMATCH; break;
      case X509_V_ERR_APPLICATION_VERIFICATION: r = CAD_TLS_CLIENT_NOT_ALLOWED; break;
      default: r = CAD_TLS_BAD_CERT; break;
    }
    cad_tls_session_set_reason(s, r, X509_verify_cert_error_string(vr));
    return;
  }
  cad_tls_reason_t r = CAD_TLS_PROTOCOL;
  switch (why) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: r = CAD_TLS_NO_CLIENT_CERT; break;
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED: r = CAD_TLS_PEER_REJECTED; break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE: r = CAD_TLS_VERSION; break;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL: r = CAD_TLS_NOT_TLS; break;
    default: break;
  }
  cad_tls_session_set_reason(s, r, text);
}

/* Move what OpenSSL wrote into net. */
static int drain_out(cad_tls_session_t *s, cad_buf_t *net) {
  size_t n;
  while ((n = BIO_ctrl_pending(s->wbio)) > 0) {
    int rc = cad_buf_reserve(net, n);
    if (rc) return rc;
    int got = BIO_read(s->wbio, net->data + net->len, (int)n);
    if (got <= 0) return CAD_E_IO;
    net->len += (size_t)got;
  }
  return 0;
}

int cad_tls_session_new(cad_tls_ctx_t *ctx, bool server, const char *server_name, bool verify_host,
                        const cad_tls_session_cbs_t *cbs, void *ud, cad_tls_session_t **out) {
  *out = NULL;
  cad_tls_session_t *s = calloc(1, sizeof *s);
  if (!s) return CAD_E_NOMEM;
  ERR_clear_error();
  s->ssl = SSL_new(ctx->ctx);
  s->rbio = BIO_new(BIO_s_mem());
  s->wbio = BIO_new(BIO_s_mem());
  if (!s->ssl || !s->rbio || !s->wbio) {
    BIO_free(s->rbio);
    BIO_free(s->wbio);
    SSL_free(s->ssl);
    free(s);
    ERR_clear_error();
    return CAD_E_NOMEM;
  }
  BIO_set_mem_eof_return(s->rbio, -1); /* empty means "wait", not end of stream */
  SSL_set_bio(s->ssl, s->rbio, s->wbio);
  s->ctx = cad_tls_ctx_ref(ctx);
  s->cbs = *cbs;
  s->ud = ud;
  *out = s;
  if (server) {
    SSL_set_accept_state(s->ssl);
    return 0;
  }
  SSL_set_connect_state(s->ssl);
  if (server_name && *server_name) {
    unsigned char bin[16];
    bool is_ip =
        inet_pton(AF_INET, server_name, bin) == 1 || inet_pton(AF_INET6, server_name, bin) == 1;
    bool ok = is_ip || SSL_set_tlsext_host_name(s->ssl, server_name) == 1;
    if (ok && verify_host && !ctx->no_verify)
      ok = (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), server_name)
                  : SSL_set1_host(s->ssl, server_name)) == 1;
    if (!ok) {
      cad_tls_session_free(s);
      *out = NULL;
      ERR_clear_error();
      return CAD_E_INVAL;
    }
  }
  return 0;
}

void cad_tls_session_free(cad_tls_session_t *s) {
  if (!s) return;
  SSL_free(s->ssl); /* and its BIOs */
  cad_tls_ctx_unref(s->ctx);
  free(s);
}

static int handshake(cad_tls_session_t *s, cad_buf_t *net) {
  ERR_clear_error();
  int r = SSL_do_handshake(s->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, r);
  int orc = drain_out(s, net); /* our handshake messages, or our alert */
  if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
    classify(s);
    return UV_EPROTO;
  }
  if (orc) return orc;
  if (r != 1) return 0;
  s->ready = true;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  X509 *peer = SSL_get0_peer_certificate(s->ssl);
#else
  X509 *peer = SSL_get_peer_certificate(s->ssl);
#endif
  if (peer) {
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, s->peer_name,
                                  sizeof s->peer_name) < 0)
      s->peer_name[0] = 0;
#if OPENSSL_VERSION_NUMBER < 0x30000000L
    X509_free(peer);
#endif
  }
  if (net->len && s->cbs.flush) s->cbs.flush(s->ud, net);
  if (s->cbs.on_ready) s->cbs.on_ready(s->ud);
  return 0;
}

int cad_tls_session_start(cad_tls_session_t *s, cad_buf_t *net) {
  return s->ready ? 0 : handshake(s, net);
}

int cad_tls_session_feed(cad_tls_session_t *s, const char *p, size_t n, cad_buf_t *net) {
  if (n && BIO_write(s->rbio, p, (int)n) != (int)n) return CAD_E_NOMEM;
  if (!s->ready) {
    int rc = handshake(s, net);
    if (rc || !s->ready) return rc;
  }
  char buf[PLAIN_CHUNK];
  for (;;) {
    ERR_clear_error();
    int k = SSL_read(s->ssl, buf, sizeof buf);
    if (k > 0) {
      if (drain_out(s, net) == 0 && net->len && s->cbs.flush) s->cbs.flush(s->ud, net);
      if (s->cbs.on_plain) s->cbs.on_plain(s->ud, buf, (size_t)k);
      continue;
    }
    int e = SSL_get_error(s->ssl, k);
    int orc = drain_out(s, net); /* post-handshake messages, alerts */
    if (e == SSL_ERROR_WANT_READ) return orc;
    if (e == SSL_ERROR_ZERO_RETURN) return UV_EOF;
    classify(s);
    return UV_EPROTO;
  }
}

int cad_tls_session_encrypt(cad_tls_session_t *s, const char *p, size_t n, cad_buf_t *net) {
  if (!s->ready) return UV_ENOTCONN;
  ERR_clear_error();
  size_t off = 0;
  while (off < n) {
    size_t chunk = n - off > (1u << 30) ? (1u << 30) : n - off;
    int k = SSL_write(s->ssl, p + off, (int)chunk);
    if (k <= 0) {
      classify(s);
      return UV_EPROTO;
    }
    off += (size_t)k;
  }
  return drain_out(s, net);
}

int cad_tls_session_close_notify(cad_tls_session_t *s, cad_buf_t *net) {
  if (!s->ready) return 0;
  ERR_clear_error();
  SSL_shutdown(s->ssl);
  ERR_clear_error();
  return drain_out(s, net);
}

bool cad_tls_session_ready(const cad_tls_session_t *s) { return s->ready; }
cad_tls_reason_t cad_tls_session_reason(const cad_tls_session_t *s) { return s->reason; }
const char *cad_tls_session_reason_text(const cad_tls_session_t *s) { return s->reason_text; }
const char *cad_tls_session_peer_name(const cad_tls_session_t *s) { return s->peer_name; }

/* ---- transports --------------------------------------------------------- */

enum { TIMER_NONE = 0, TIMER_HANDSHAKE, TIMER_LINGER };

struct cad_transport {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect_req;
  uv_shutdown_t shut;
  uv_loop_t *loop;
  cad_transport_cbs_t cbs;
  bool (*may_read)(cad_transport_t *t);
  void (*refused_cb)(cad_transport_t *t);
  void *data;
  cad_tls_session_t *tls; /* NULL: plain TCP */
  int timer_mode;
  int open_handles;
  bool server;    /* accepted (not connected) */
  bool connected; /* accepted, or connect succeeded */
  bool ready;     /* on_ready delivered */
  bool want_read; /* the owner wants on_data */
  bool uv_reading;
  bool errored; /* on_error delivered */
  int err;      /* what on_error was given */
  bool refused; /* may_read said no: the UV_ENOBUFS that follows is ours */
  bool closing;
  bool lingering;      /* closing: discarding input until the peer's FIN */
  size_t discard_left; /* while lingering */
  uint64_t bytes_in, bytes_out;
  bool handles_closing;
  void (*done)(void *);
  void *done_arg;
  cad_tls_reason_t reason;
  char reason_text[192];
};

typedef struct wreq {
  uv_write_t w;
  cad_transport_t *t;
  cad_transport_write_cb cb;
  void *arg;
  char *owned; /* ciphertext (TLS), freed with the request */
} wreq_t;

/* One loop thread consumes a read before the next: one buffer per thread. */
static _Thread_local char read_buf[READ_BUF_SIZE];

static void fail(cad_transport_t *t, int err) {
  if (t->errored || t->closing) return;
  t->errored = true;
  t->err = err;
  if (t->uv_reading) uv_read_stop((uv_stream_t *)&t->tcp);
  t->uv_reading = false;
  uv_timer_stop(&t->timer);
  t->timer_mode = TIMER_NONE;
  if (err == UV_EPROTO && t->tls) {
    t->reason = cad_tls_session_reason(t->tls);
    snprintf(t->reason_text, sizeof t->reason_text, "%s", cad_tls_session_reason_text(t->tls));
  }
  if (t->cbs.on_error) t->cbs.on_error(t, err);
}

static void on_write(uv_write_t *w, int status) {
  wreq_t *wr = (wreq_t *)w;
  cad_transport_t *t = wr->t;
  if (wr->cb) wr->cb(t, status, wr->arg);
  free(wr->owned);
  free(wr);
  if (status < 0 && status != UV_ECANCELED) fail(t, status);
}

/* Write the ciphertext in net (taken over: net is left empty). */
static int write_net(cad_transport_t *t, cad_buf_t *net, cad_transport_write_cb cb, void *arg) {
  if (net->len == 0) {
    cad_buf_free(net);
    return 0;
  }
  wreq_t *wr = malloc(sizeof *wr);
  if (!wr) {
    cad_buf_free(net);
    return CAD_E_NOMEM;
  }
  wr->t = t;
  wr->cb = cb;
  wr->arg = arg;
  wr->owned = net->data;
  uv_buf_t b = uv_buf_init(net->data, (unsigned)net->len);
  t->bytes_out += net->len;
  *net = (cad_buf_t)CAD_BUF_INIT;
  int rc = uv_write(&wr->w, (uv_stream_t *)&t->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(wr->owned);
    free(wr);
  }
  return rc;
}

static void sess_ready(void *ud) {
  cad_transport_t *t = ud;
  t->ready = true;
  uv_timer_stop(&t->timer);
  t->timer_mode = TIMER_NONE;
  if (t->cbs.on_ready && !t->closing && !t->errored) t->cbs.on_ready(t);
}

static void sess_plain(void *ud, const char *p, size_t n) {
  cad_transport_t *t = ud;
  if (!t->closing && !t->errored) t->cbs.on_data(t, p, n);
}

static void sess_flush(void *ud, cad_buf_t *net) {
  cad_transport_t *t = ud;
  int rc = t->closing ? 0 : write_net(t, net, NULL, NULL);
  cad_buf_free(net);
  if (rc < 0) fail(t, rc);
}

static const cad_tls_session_cbs_t sess_cbs = {sess_ready, sess_plain, sess_flush};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  cad_transport_t *t = h->data;
  (void)hint;
  if (!t->closing && t->may_read && !t->may_read(t)) {
    t->refused = true;         /* no read_stop here: libuv calls on_read next */
    *b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  b->base = read_buf;
  b->len = sizeof read_buf;
}

static void close_handles(cad_transport_t *t);

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  cad_transport_t *t = st->data;
  if (nread > 0) t->bytes_in += (uint64_t)nread;
  if (t->lingering) {
    if (nread < 0 || (size_t)nread > t->discard_left) close_handles(t);
    else t->discard_left -= (size_t)nread;
    return;
  }
  if (nread == UV_ENOBUFS && t->refused) {
    t->refused = false;
    if (t->refused_cb && !t->errored && !t->closing) t->refused_cb(t);
    return;
  }
  if (t->errored || t->closing) return;
  if (nread < 0) {
    if (t->tls && !t->ready && !(t->server && t->bytes_in == 0)) {
      /* The peer hung up in the middle of the handshake: usually it did
       * not like what it saw and did not say so with an alert.  (A client
       * that sent nothing at all is a probe: plain EOF / error below.) */
      cad_tls_session_set_reason(
          t->tls, CAD_TLS_PROTOCOL,
          nread == UV_EOF ? "connection closed during the handshake" : uv_strerror((int)nread));
      fail(t, UV_EPROTO);
      return;
    }
    fail(t, (int)nread);
    return;
  }
  if (nread == 0) return;
  if (!t->tls) {
    t->cbs.on_data(t, buf->base, (size_t)nread);
    return;
  }
  cad_buf_t net = CAD_BUF_INIT;
  int rc = cad_tls_session_feed(t->tls, buf->base, (size_t)nread, &net);
  int wrc = t->closing ? 0 : write_net(t, &net, NULL, NULL); /* alerts go out too */
  cad_buf_free(&net);
  if (rc == 0 && wrc < 0) rc = wrc;
  if (rc < 0) fail(t, rc);
}

static void timer_cb(uv_timer_t *tm);

static int start_reading(cad_transport_t *t) {
  if (t->uv_reading || t->errored || t->closing || !t->want_read) return 0;
  int rc = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
  if (rc == 0) t->uv_reading = true;
  return rc;
}

static void free_on_close(uv_handle_t *h) { free(h->data); }

int cad_transport_new(uv_loop_t *loop, const cad_transport_cbs_t *cbs, void *data,
                      cad_transport_t **out) {
  *out = NULL;
  cad_transport_t *t = calloc(1, sizeof *t);
  if (!t) return CAD_E_NOMEM;
  int rc = uv_tcp_init(loop, &t->tcp);
  if (rc < 0) {
    free(t);
    return rc;
  }
  t->tcp.data = t;
  rc = uv_timer_init(loop, &t->timer);
  if (rc < 0) { /* only with a broken loop: close the tcp handle, then free */
    uv_close((uv_handle_t *)&t->tcp, free_on_close);
    return rc;
  }
  t->loop = loop;
  t->cbs = *cbs;
  t->data = data;
  t->timer.data = t;
  t->open_handles = 2;
  t->want_read = true;
  *out = t;
  return 0;
}

uv_stream_t *cad_transport_stream(cad_transport_t *t) { return (uv_stream_t *)&t->tcp; }
void *cad_transport_data(const cad_transport_t *t) { return t->data; }
void cad_transport_set_read_gate(cad_transport_t *t, bool (*may_read)(cad_transport_t *t),
                                 void (*refused)(cad_transport_t *t)) {
  t->may_read = may_read;
  t->refused_cb = refused;
}
void cad_transport_set_data(cad_transport_t *t, void *data) { t->data = data; }
cad_tls_reason_t cad_transport_tls_reason(const cad_transport_t *t) { return t->reason; }
const char *cad_transport_reason(const cad_transport_t *t) { return t->reason_text; }
bool cad_transport_is_tls(const cad_transport_t *t) { return t->tls != NULL; }
const char *cad_transport_peer_name(const cad_transport_t *t) {
  return t->tls ? cad_tls_session_peer_name(t->tls) : "";
}
uint64_t cad_transport_bytes_in(const cad_transport_t *t) { return t->bytes_in; }
uint64_t cad_transport_bytes_out(const cad_transport_t *t) { return t->bytes_out; }
int cad_transport_peer_addr(const cad_transport_t *t, struct sockaddr_storage *out) {
  int len = sizeof *out;
  return uv_tcp_getpeername(&t->tcp, (struct sockaddr *)out, &len);
}
size_t cad_transport_write_queue_size(const cad_transport_t *t) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&t->tcp);
}

int cad_transport_accept(cad_transport_t *t, cad_tls_ctx_t *tls, uint64_t handshake_timeout_ms) {
  if (t->closing || t->connected) return UV_EINVAL;
  if (tls) {
    int rc = cad_tls_session_new(tls, true, NULL, false, &sess_cbs, t, &t->tls);
    if (rc) return rc;
  }
  t->connected = true;
  t->server = true;
  uv_tcp_nodelay(&t->tcp, 1);
  int rc = start_reading(t);
  if (rc < 0) return rc;
  if (tls) {
    t->timer_mode = TIMER_HANDSHAKE;
    uv_timer_start(&t->timer, timer_cb,
                   handshake_timeout_ms ? handshake_timeout_ms : DEFAULT_HANDSHAKE_MS, 0);
  } else {
    t->ready = true;
    if (t->cbs.on_ready) t->cbs.on_ready(t);
  }
  return 0;
}

static void on_connect(uv_connect_t *req, int status) {
  cad_transport_t *t = req->data;
  if (t->closing) return;
  if (status < 0) {
    fail(t, status);
    return;
  }
  t->connected = true;
  uv_tcp_nodelay(&t->tcp, 1);
  int rc = start_reading(t);
  if (rc < 0) {
    fail(t, rc);
    return;
  }
  if (t->tls) {
    cad_buf_t net = CAD_BUF_INIT;
    rc = cad_tls_session_start(t->tls, &net); /* the ClientHello */
    int wrc = write_net(t, &net, NULL, NULL);
    cad_buf_free(&net);
    if (rc == 0) rc = wrc;
    if (rc < 0) fail(t, rc);
    return;
  }
  t->ready = true;
  if (t->cbs.on_ready) t->cbs.on_ready(t);
}

int cad_transport_connect(cad_transport_t *t, const struct sockaddr *addr, cad_tls_ctx_t *tls,
                          const char *server_name, bool verify_host) {
  if (t->closing || t->connected || t->tls) return UV_EINVAL;
  if (tls) {
    int rc = cad_tls_session_new(tls, false, server_name, verify_host, &sess_cbs, t, &t->tls);
    if (rc) return rc;
  }
  t->connect_req.data = t;
  return uv_tcp_connect(&t->connect_req, &t->tcp, addr, on_connect);
}

/* Buffers a write may hand to the kernel at once (the callers write one). */
#define WRITE_NOW_BUFS 4

int cad_transport_write(cad_transport_t *t, const uv_buf_t *bufs, unsigned nbufs,
                        cad_transport_write_cb cb, void *arg) {
  if (!t->ready || t->closing || (t->errored && t->err != UV_EOF)) return UV_ENOTCONN;
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++) total += bufs[i].len;
  if (total == 0) return UV_EINVAL;
  if (!t->tls) {
    /* At once when nothing is queued (uv_try_write says UV_EAGAIN behind a
     * queued write, so order holds); the rest, if any, queued. */
    int n = nbufs <= WRITE_NOW_BUFS ? uv_try_write((uv_stream_t *)&t->tcp, bufs, nbufs) : 0;
    uv_buf_t rest[WRITE_NOW_BUFS];
    if (n > 0) {
      t->bytes_out += (size_t)n;
      if ((size_t)n == total) return CAD_TRANSPORT_WRITTEN;
      size_t skip = (size_t)n;
      unsigned k = 0;
      for (unsigned i = 0; i < nbufs; i++) {
        size_t s = skip < bufs[i].len ? skip : bufs[i].len;
        skip -= s;
        if (s < bufs[i].len) rest[k++] = uv_buf_init(bufs[i].base + s, (unsigned)(bufs[i].len - s));
      }
      bufs = rest;
      nbufs = k;
      total -= (size_t)n;
    }
    wreq_t *wr = malloc(sizeof *wr);
    if (!wr) return CAD_E_NOMEM;
    wr->t = t;
    wr->cb = cb;
    wr->arg = arg;
    wr->owned = NULL;
    int rc = uv_write(&wr->w, (uv_stream_t *)&t->tcp, bufs, nbufs, on_write);
    if (rc < 0) free(wr);
    else t->bytes_out += total;
    return rc;
  }
  cad_buf_t net = CAD_BUF_INIT;
  for (unsigned i = 0; i < nbufs; i++) {
    if (!bufs[i].len) continue;
    int rc = cad_tls_session_encrypt(t->tls, bufs[i].base, bufs[i].len, &net);
    if (rc < 0) {
      cad_buf_free(&net);
      return rc;
    }
  }
  return write_net(t, &net, cb, arg);
}

void cad_transport_read_stop(cad_transport_t *t) {
  t->want_read = false;
  if (t->uv_reading) uv_read_stop((uv_stream_t *)&t->tcp);
  t->uv_reading = false;
}

int cad_transport_read_start(cad_transport_t *t) {
  if (t->closing || t->errored) return 0;
  t->want_read = true;
  if (!t->connected) return 0; /* reading starts with the connection */
  return start_reading(t);
}

int cad_transport_read_pending(cad_transport_t *t) {
  if (!t->connected || !t->uv_reading || t->errored || t->closing) return 0;
  uv_os_fd_t fd;
  int rc = uv_fileno((const uv_handle_t *)&t->tcp, &fd);
  if (rc < 0) return rc;
  /* Bounded: an owner that reads an idle connection expects little or
   * nothing (a FIN, an alert); the rest waits for the loop.  Not read_buf:
   * this may run inside another transport's on_data. */
  char buf[4096];
  for (int i = 0; i < 4 && t->uv_reading && !t->errored && !t->closing; i++) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    uv_buf_t b = uv_buf_init(buf, sizeof buf);
    on_read((uv_stream_t *)&t->tcp,
            n < 0    ? uv_translate_sys_error(errno)
            : n == 0 ? UV_EOF
                     : n,
            &b);
    if (n <= 0) break;
  }
  return 0;
}

bool cad_transport_connected(const cad_transport_t *t) { return t->connected; }

static void on_handle_closed(uv_handle_t *h) {
  cad_transport_t *t = h->data;
  if (--t->open_handles > 0) return;
  void (*done)(void *) = t->done;
  void *arg = t->done_arg;
  cad_tls_session_free(t->tls);
  free(t);
  if (done) done(arg);
}

static void close_handles(cad_transport_t *t) {
  if (t->handles_closing) return;
  t->handles_closing = true;
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&t->timer, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  cad_transport_t *t = req->data;
  /* Lingering: the peer's FIN (on_read) or the timer ends it. */
  if (!t->lingering || status < 0) close_handles(t);
}

static void timer_cb(uv_timer_t *tm) {
  cad_transport_t *t = tm->data;
  int mode = t->timer_mode;
  t->timer_mode = TIMER_NONE;
  if (mode == TIMER_HANDSHAKE) {
    cad_tls_session_set_reason(t->tls, CAD_TLS_PROTOCOL, "handshake timed out");
    t->reason = CAD_TLS_PROTOCOL;
    snprintf(t->reason_text, sizeof t->reason_text, "%s", cad_tls_session_reason_text(t->tls));
    fail(t, UV_ETIMEDOUT);
  } else if (mode == TIMER_LINGER) {
    close_handles(t);
  }
}

void cad_transport_close(cad_transport_t *t, bool graceful, uint64_t linger_ms,
                         void (*done)(void *arg), void *arg) {
  if (t->closing) {
    if (t->lingering && !graceful) close_handles(t); /* cut a lingering close short */
    return;
  }
  t->closing = true;
  t->done = done;
  t->done_arg = arg;
  uv_timer_stop(&t->timer);
  t->timer_mode = TIMER_NONE;
  if (t->uv_reading) uv_read_stop((uv_stream_t *)&t->tcp);
  t->uv_reading = false;
  if (graceful && t->connected && (!t->errored || t->err == UV_EOF)) {
    if (t->tls && t->ready) {
      cad_buf_t net = CAD_BUF_INIT;
      if (cad_tls_session_close_notify(t->tls, &net) == 0) write_net(t, &net, NULL, NULL);
      cad_buf_free(&net);
    }
    t->shut.data = t;
    if (uv_shutdown(&t->shut, (uv_stream_t *)&t->tcp, on_shutdown) == 0) {
      t->timer_mode = TIMER_LINGER;
      uv_timer_start(&t->timer, timer_cb, linger_ms ? linger_ms : DEFAULT_LINGER_MS, 0);
      return;
    }
  }
  close_handles(t);
}

void cad_transport_close_linger(cad_transport_t *t, uint64_t linger_ms, size_t max_discard,
                                void (*done)(void *arg), void *arg) {
  if (t->closing) return;
  cad_transport_close(t, true, linger_ms, done, arg);
  if (t->handles_closing) return; /* no FIN could be sent: closed at once */
  t->lingering = true;
  t->discard_left = max_discard ? max_discard : DEFAULT_DISCARD;
  if (uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read) < 0) {
    close_handles(t);
    return;
  }
  t->uv_reading = true;
}

/* ---- address allow-lists ------------------------------------------------ */

int cad_cidr_parse(const char *s, cad_cidr_t *out) {
  return cad_cidr_parse_why(s, out) ? CAD_E_INVAL : 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, int bits) {
  int full = bits / 8, rest = bits % 8;
  if (full && memcmp(a, b, (size_t)full) != 0) return false;
  if (!rest) return true;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

bool cad_cidr_match(const cad_cidr_t *list, size_t n, const struct sockaddr *sa) {
  if (n == 0) return true;
  unsigned char a[16];
  int fam;
  if (sa->sa_family == AF_INET) {
    memcpy(a, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    fam = AF_INET;
  } else if (sa->sa_family == AF_INET6) {
    const unsigned char *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0) {
      memcpy(a, b + 12, 4);
      fam = AF_INET;
    } else {
      memcpy(a, b, 16);
      fam = AF_INET6;
    }
  } else {
    return false;
  }
  for (size_t i = 0; i < n; i++)
    if (list[i].family == fam && prefix_equal(a, list[i].addr, list[i].prefix)) return true;
  return false;
}
