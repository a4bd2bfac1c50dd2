/* cli.h - the subcommands of the caduceus binary.
 *
 * Each takes the arguments after its name (argv[0] is the subcommand name),
 * prints its own --help, writes errors to stderr, and returns the process
 * exit status (0 success, 1 failure of the work, 2 usage error).
 */
#ifndef CAD_CLI_H
#define CAD_CLI_H

#include <stddef.h>
#include <stdint.h>

int cad_cli_parse(int argc, char **argv);   /* cli_parse.c */
int cad_cli_get(int argc, char **argv);     /* cli_parse.c */
int cad_cli_check(int argc, char **argv);   /* cli_check.c */
int cad_cli_run(int argc, char **argv);     /* run.c */
int cad_cli_queue(int argc, char **argv);   /* cli_queue.c */
int cad_cli_test(int argc, char **argv);    /* cli_test.c */
int cad_cli_send(int argc, char **argv);    /* cli_send.c */
int cad_cli_replay(int argc, char **argv);  /* cli_replay.c */
int cad_cli_preview(int argc, char **argv); /* cli_preview.c */
int cad_cli_search(int argc, char **argv);  /* cli_search.c */
int cad_cli_show(int argc, char **argv);    /* cli_search.c */
int cad_cli_archive(int argc, char **argv); /* cli_archive_cmd.c */
int cad_cli_token(int argc, char **argv);   /* cli_token.c */
int cad_cli_fhir(int argc, char **argv);    /* cli_fhir.c */
int cad_cli_ctl(int argc, char **argv);     /* cli_ctl.c */

/* The data directory named by `arg`: a directory itself, or a
 * configuration file's engine.data_dir (then limits, when not NULL, gets
 * its archive retain_ms and max_bytes).  Prints the error and returns 1 on
 * failure, else 0.  cli_archive_cmd.c */
/* Record a queue change (requeue, purge) in the archive of the data dir
 * whose journal is `jdir`, with the user who ran it (cli_archive_cmd.c);
 * a failure is said on stderr, never changes the command's result. */
void cad_cli_archive_note(const char *jdir, const char *kind, const char *dest, uint16_t qid,
                          uint64_t seq, uint64_t new_seq, uint64_t count);
int cad_cli_archive_dir(const char *cmd, const char *arg, char *dir, size_t cap,
                        uint64_t limits[2]);

/* Print the message p/len as `caduceus parse` does (a tree with paths) to
 * stdout.  Returns 0 or the parse error (nothing printed). */
int cad_cli_print_tree(const char *p, size_t len); /* cli_parse.c */

/* Shared helper: read a whole file ("-" = stdin) into a malloc'd buffer.
 * Returns 0 or -errno; *data is owned by the caller. */
int cad_cli_read_file(const char *path, char **data, size_t *len);

#endif
