#include "cad_error.h"

#include <string.h>

static const struct {
  int code;
  const char *name;
  const char *text;
} table[] = {
    {CAD_OK, "CAD_OK", "success"},
    {CAD_E_NOMEM, "CAD_E_NOMEM", "out of memory or memory budget exhausted"},
    {CAD_E_INVAL, "CAD_E_INVAL", "invalid argument"},
    {CAD_E_TOOBIG, "CAD_E_TOOBIG", "input exceeds a configured limit"},
    {CAD_E_NOMSH, "CAD_E_NOMSH", "input does not start with an MSH, BHS or FHS segment"},
    {CAD_E_DELIM, "CAD_E_DELIM", "invalid or missing delimiters in MSH-1/MSH-2"},
    {CAD_E_SEGMENT, "CAD_E_SEGMENT", "invalid segment id"},
    {CAD_E_PATH, "CAD_E_PATH", "invalid path expression"},
    {CAD_E_NOTFOUND, "CAD_E_NOTFOUND", "element not found"},
    {CAD_E_EMPTY, "CAD_E_EMPTY", "empty input"},
    {CAD_E_FRAME, "CAD_E_FRAME", "MLLP framing error"},
    {CAD_E_CONFIG, "CAD_E_CONFIG", "configuration error"},
    {CAD_E_IO, "CAD_E_IO", "I/O error"},
    {CAD_E_ESCAPE, "CAD_E_ESCAPE", "malformed escape sequence"},
    {CAD_E_FULL, "CAD_E_FULL", "queue or buffer full"},
    {CAD_E_STATE, "CAD_E_STATE", "operation not valid in this state"},
};

const char *cad_strerror(int err) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].code == err) return table[i].text;
  if (err < 0 && err > -4096) return strerror(-err);
  return "unknown error";
}

const char *cad_err_name(int err) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].code == err) return table[i].name;
  if (err < 0 && err > -4096) {
    /* strerrorname_np is glibc >= 2.32 (Debian 12 has 2.36). */
    extern const char *strerrorname_np(int);
    const char *n = strerrorname_np(-err);
    if (n) return n;
  }
  return "EUNKNOWN";
}
