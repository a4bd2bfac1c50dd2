/* cli_test_int.h - what cli_test.c shares with cli_test_fhir.c. */
#ifndef CAD_CLI_TEST_INT_H
#define CAD_CLI_TEST_INT_H

#include <stddef.h>

#include "fhir.h"

/* Reports one difference line (printf style). */
typedef void (*cad__test_line_fn)(void *ud, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Render route output msg/mlen in format f and compare it with the
 * expected bytes exp/elen: as JSON by path (fhir, json), as text (xml,
 * er7).  Differences go to line(). */
void cad__test_compare_rendered(cad__test_line_fn line, void *ud, const char *dest, cad_format_t f,
                                const cad_fhir_opts_t *o, const char *exp, size_t elen,
                                const char *msg, size_t mlen);

#endif
