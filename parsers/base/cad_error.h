/* cad_error.h - the one error table of Caduceus.
 *
 * Every function that can fail returns an int: 0 (or a count) on success and a
 * negative code on failure.  Codes below are Caduceus' own; libuv codes (which
 * are negated errno values on Unix, e.g. UV_ENOENT == -ENOENT) pass through
 * unchanged, and cad_strerror() describes both.
 */
#ifndef CAD_ERROR_H
#define CAD_ERROR_H

enum {
  CAD_OK = 0,
  CAD_E_NOMEM = -10001,    /* allocation failed or a memory budget is exhausted */
  CAD_E_INVAL = -10002,    /* invalid argument */
  CAD_E_TOOBIG = -10003,   /* input exceeds a configured limit (size, segments, fields) */
  CAD_E_NOMSH = -10004,    /* input does not start with a header segment (MSH, BHS, FHS) */
  CAD_E_DELIM = -10005,    /* MSH-1 / MSH-2 delimiters missing or invalid */
  CAD_E_SEGMENT = -10006,  /* a segment id is not 3 upper-case letters or digits */
  CAD_E_PATH = -10007,     /* a path expression is syntactically wrong */
  CAD_E_NOTFOUND = -10008, /* the addressed element does not exist */
  CAD_E_EMPTY = -10009,    /* input is empty */
  CAD_E_FRAME = -10010,    /* MLLP framing error */
  CAD_E_CONFIG = -10011,   /* configuration error (details in the diagnostic) */
  CAD_E_IO = -10012,       /* I/O error (details in errno / the log) */
  CAD_E_ESCAPE = -10013,   /* a malformed escape sequence (strict mode only) */
  CAD_E_FULL = -10014,     /* a bounded queue or buffer is full */
  CAD_E_STATE = -10015,    /* operation not valid in the current state */
};

/* A static, human-readable description of a Caduceus or libuv/errno code.
 * Never returns NULL. */
const char *cad_strerror(int err);

/* The symbolic name of a code ("CAD_E_TOOBIG", "ENOENT", ...). Never NULL. */
const char *cad_err_name(int err);

#endif
