/* admin_console.h - the web console's static files, embedded in the binary
 * at build time (console/embed.py, a meson custom_target). */
#ifndef CAD_ADMIN_CONSOLE_H
#define CAD_ADMIN_CONSOLE_H

#include <stddef.h>

typedef struct cad__console_file {
  const char *name;         /* "index.html" */
  const char *content_type; /* static */
  const unsigned char *data;
  size_t len;
} cad__console_file_t;

extern const cad__console_file_t cad__console_files[];
extern const size_t cad__console_nfiles;

#endif
