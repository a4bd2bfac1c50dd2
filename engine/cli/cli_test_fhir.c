/* cli_test_fhir.c - route tests that expect another format than ER7: what a
 * destination with `format: fhir | json | xml` delivers, or `{ fhir: FILE }`
 * (the FHIR Bundle of what the destination receives), compared as JSON with
 * the differences named by JSON path:
 *
 *   fhir_api: entry[2].resource.valueQuantity.value: expected 95, got 96
 *
 * XML is compared as text (first differing line). */
#include "cli_test_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"

#define MAX_SHOWN 60

static void show_json(char *buf, size_t cap, const json_t *v) {
  if (!v) {
    snprintf(buf, cap, "nothing");
    return;
  }
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
  if (!s) {
    snprintf(buf, cap, "?");
    return;
  }
  if (strlen(s) > MAX_SHOWN) snprintf(buf, cap, "%.*s...", MAX_SHOWN, s);
  else snprintf(buf, cap, "%s", s);
  free(s);
}

static void diff(cad__test_line_fn line, void *ud, const char *dest, char *path, size_t plen,
                 size_t cap, const json_t *e, const json_t *g) {
  if (e && g && json_typeof(e) == json_typeof(g)) {
    if (json_is_object(e)) {
      const char *k;
      json_t *v;
      json_object_foreach((json_t *)e, k, v) {
        snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", k);
        diff(line, ud, dest, path, strlen(path), cap, v, json_object_get(g, k));
      }
      json_object_foreach((json_t *)g, k, v) {
        if (json_object_get(e, k)) continue;
        snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", k);
        diff(line, ud, dest, path, strlen(path), cap, NULL, v);
      }
      path[plen] = 0;
      return;
    }
    if (json_is_array(e)) {
      size_t n = json_array_size(e) > json_array_size(g) ? json_array_size(e) : json_array_size(g);
      for (size_t i = 0; i < n; i++) {
        snprintf(path + plen, cap - plen, "[%zu]", i);
        diff(line, ud, dest, path, strlen(path), cap, json_array_get(e, i), json_array_get(g, i));
      }
      path[plen] = 0;
      return;
    }
  }
  if (e && g && json_equal((json_t *)e, (json_t *)g)) return;
  char a[MAX_SHOWN + 8], b[MAX_SHOWN + 8];
  show_json(a, sizeof a, e);
  show_json(b, sizeof b, g);
  line(ud, "%s: %s: expected %s, got %s", dest, plen ? path : "(the document)", a, b);
}

void cad__test_compare_rendered(cad__test_line_fn line, void *ud, const char *dest, cad_format_t f,
                                const cad_fhir_opts_t *o, const char *exp, size_t elen,
                                const char *msg, size_t mlen) {
  cad_buf_t got = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  int rc = cad_render(f, msg, mlen, o, &got, &dg);
  if (rc) {
    line(ud, "%s: the message cannot be rendered as %s: %s", dest, cad_format_name(f),
         dg.reason[0] ? dg.reason : cad_strerror(rc));
    cad_buf_free(&got);
    return;
  }
  if (f == CAD_FORMAT_XML || f == CAD_FORMAT_ER7) {
    size_t i = 0, lineno = 1;
    while (i < elen && i < got.len && exp[i] == got.data[i]) lineno += exp[i++] == '\n';
    /* a trailing line end is not a difference */
    bool same = (elen == got.len && i == elen) ||
                (i == elen && got.len == elen + 1 && got.data[elen] == '\n') ||
                (i == got.len && elen == got.len + 1 && exp[got.len] == '\n');
    if (!same)
      line(ud, "%s: %s differs from the expected text at byte %zu (line %zu)", dest,
           cad_format_name(f), i, lineno);
    cad_buf_free(&got);
    return;
  }
  json_error_t je;
  json_t *e = json_loadb(exp, elen, 0, &je);
  json_t *g = json_loadb(got.data ? got.data : "", got.len, 0, &je);
  if (!e)
    line(ud, "%s: the expected %s is not JSON (line %d: %s)", dest, cad_format_name(f), je.line,
         je.text);
  else if (!g) line(ud, "%s: the %s produced is not JSON", dest, cad_format_name(f));
  else {
    char path[1024] = "";
    diff(line, ud, dest, path, 0, sizeof path, e, g);
  }
  json_decref(e);
  json_decref(g);
  cad_buf_free(&got);
}
