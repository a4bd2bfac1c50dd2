/* admin_console.c - serving the web console (admin_int.h).
 *
 * GET / and GET /console/ give index.html, GET /console/NAME the other
 * embedded files.  They hold no data and need no token: the console logs in
 * with a token the user types, kept in the tab's sessionStorage and sent as
 * a bearer header on every API call (never a cookie, so no CSRF).  A
 * Content-Security-Policy allows scripts and styles from the engine only.
 */
#include <stdlib.h>
#include <string.h>

#include "admin_console.h"
#include "admin_int.h"

#define CSP                                                                                       \
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " \
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static bool is(const cad_http_req_t *r, const char *s) {
  return r->path && strlen(s) == r->path_len && memcmp(r->path, s, r->path_len) == 0;
}

bool cad_admin_console(cad_admin_t *a, const cad_http_req_t *req, cad_http_res_t *res) {
  (void)a;
  if (!req->path || !req->method || req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
    return false;
  const char *name = NULL;
  static const char prefix[] = "/console/";
  size_t pl = sizeof prefix - 1;
  if (is(req, "/") || is(req, "/console") || is(req, "/console/")) name = "index.html";
  else if (req->path_len > pl && memcmp(req->path, prefix, pl) == 0) {
    for (size_t i = 0; i < cad__console_nfiles; i++) {
      size_t n = strlen(cad__console_files[i].name);
      if (req->path_len - pl == n && memcmp(req->path + pl, cad__console_files[i].name, n) == 0)
        name = cad__console_files[i].name;
    }
    if (!name) {
      cad__admin_error(res, 404, "not_found", "no such console file");
      return true;
    }
  }
  if (!name) return false;
  for (size_t i = 0; i < cad__console_nfiles; i++) {
    const cad__console_file_t *f = &cad__console_files[i];
    if (strcmp(f->name, name) != 0) continue;
    res->body = malloc(f->len + 1); /* NUL-terminated like every answer */
    if (!res->body) {
      cad__admin_error(res, 500, "internal", "out of memory");
      return true;
    }
    memcpy(res->body, f->data, f->len);
    res->body[f->len] = 0;
    res->len = f->len;
    res->status = 200;
    res->content_type = f->content_type;
    res->csp = CSP;
    return true;
  }
  cad__admin_error(res, 404, "not_found", "no such console file");
  return true;
}
