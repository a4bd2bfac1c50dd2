/* main.c - the caduceus command line: dispatch to a subcommand. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
  const char *name;
  int (*fn)(int, char **);
  const char *summary;
} command_t;

static const command_t commands[] = {
    {"run", cad_cli_run, "run the engine on a configuration"},
    {"check", cad_cli_check, "validate a configuration and summarise it"},
    {"parse", cad_cli_parse, "show every message of a file as a tree with paths"},
    {"get", cad_cli_get, "print the value at a path for every message of a file"},
    {"queue", cad_cli_queue, "look into the durable queue: stats, list, show, requeue, purge"},
    {"test", cad_cli_test, "run the route test cases of a configuration"},
    {"send", cad_cli_send, "send the messages of files to an MLLP listener, report each ACK"},
    {"replay", cad_cli_replay, "re-send message archives at a controlled rate, resumable"},
    {"preview", cad_cli_preview, "run an archive through a configuration's routes offline"},
    {"search", cad_cli_search, "find messages in the message archive (patient, id, type, ...)"},
    {"show", cad_cli_show, "one archived message: record, ACK, tree, delivery journey"},
    {"archive", cad_cli_archive, "the message archive: stats, prune, check, reindex"},
    {"token", cad_cli_token, "make an admin API token: token new NAME --role ROLE"},
    {"fhir", cad_cli_fhir, "print each message of files as a FHIR R4 Bundle (or json, xml)"},
    {"ctl", cad_cli_ctl, "operate a running engine through its admin API (CADUCEUS_TOKEN)"},
};

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus COMMAND [ARGS]\n"
          "\n"
          "Caduceus, an HL7 v2 interface engine.\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n'caduceus COMMAND --help' describes a command.\n");
}

int cad_cli_read_file(const char *path, char **data, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return -errno;
  size_t cap = 1 << 16, n = 0, r;
  char *buf = malloc(cap);
  if (!buf) {
    if (f != stdin) fclose(f);
    return -ENOMEM;
  }
  while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        if (f != stdin) fclose(f);
        return -ENOMEM;
      }
      buf = nb;
      cap *= 2;
    }
  }
  int err = ferror(f) ? -EIO : 0;
  if (f != stdin) fclose(f);
  if (err) {
    free(buf);
    return err;
  }
  *data = buf;
  *len = n;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("caduceus 0.1.0\n");
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "caduceus: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
