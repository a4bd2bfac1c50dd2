/* cli.h - the subcommands of the caduceus binary.
 *
 * Each takes the arguments after its name (argv[0] is the subcommand name),
 * prints its own --help, writes errors to stderr, and returns the process
 * exit status (0 success, 1 failure of the work, 2 usage error).
 */
#ifndef CAD_CLI_H
#define CAD_CLI_H

#include <stddef.h>

int cad_cli_parse(int argc, char **argv);   /* cli_parse.c */
int cad_cli_get(int argc, char **argv);     /* cli_parse.c */
int cad_cli_check(int argc, char **argv);   /* cli_check.c */
int cad_cli_run(int argc, char **argv);     /* run.c */
int cad_cli_queue(int argc, char **argv);   /* cli_queue.c */
int cad_cli_test(int argc, char **argv);    /* cli_test.c */
int cad_cli_send(int argc, char **argv);    /* cli_send.c */
int cad_cli_replay(int argc, char **argv);  /* cli_replay.c */
int cad_cli_preview(int argc, char **argv); /* cli_preview.c */

/* Shared helper: read a whole file ("-" = stdin) into a malloc'd buffer.
 * Returns 0 or -errno; *data is owned by the caller. */
int cad_cli_read_file(const char *path, char **data, size_t *len);

#endif
