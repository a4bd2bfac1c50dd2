/* cli_fhir.c - `caduceus fhir FILE...`: each message of the files as a
 * FHIR R4 transaction Bundle (parsers/fhir), or in another delivery format.
 * Files are read as `caduceus parse` reads them (cli_archive.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "cli.h"
#include "cli_archive.h"
#include "config.h"
#include "fhir.h"

#define MAX_SYSTEMS 64

typedef struct fhir_cli {
  cad_format_t format;
  cad_fhir_opts_t opts;
  cad_fhir_system_t systems[MAX_SYSTEMS];
  size_t nsystems;
  const char *config;
  cad_config_t *cfg;
} fhir_cli_t;

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus fhir [--format fhir|json|xml|er7] [--config CONFIG]\n"
          "                     [--system AUTHORITY=URI]... [--timezone ZONE] FILE...\n"
          "\n"
          "Prints each HL7 v2 message of the FILEs (or standard input, '-') as a FHIR R4\n"
          "transaction Bundle in JSON, one per message, as a destination with\n"
          "'format: fhir' delivers it.  FILEs are read as 'caduceus parse' reads them\n"
          "(ER7 text with any line ends, FHS/BHS batches, MLLP captures, gzip).\n"
          "Supported: ADT^A01/A02/A03/A04/A08/A11/A13/A28/A31, ORU^R01, VXU^V04,\n"
          "ORM^O01, OML^O21, MDM^T02 (docs/fhir.md has the mappings).\n"
          "\n"
          "  --format F        fhir (default), json (the tree of 'parse --json'), xml\n"
          "                    (the HL7 v2 XML encoding) or er7\n"
          "  --config CONFIG   take the 'fhir:' settings (systems, timezone) of CONFIG\n"
          "  --system A=URI    identifier system for assigning authority A (repeatable;\n"
          "                    after --config's)\n"
          "  --timezone ZONE   zone for times that carry none (nor MSH-7): Z, +01:00\n"
          "\n"
          "Exit status: 0 every message converted, 1 some message or file could not be\n"
          "read or converted (reported on stderr; the others are still printed), 2 usage.\n");
}

static int on_message(fhir_cli_t *f, const char *path, const cad__archive_item_t *it) {
  cad_buf_t out = CAD_BUF_INIT;
  cad_fhir_diag_t dg;
  int rc = cad_render(f->format, it->p, it->len, &f->opts, &out, &dg);
  if (rc) {
    fprintf(stderr, "%s: message %llu (offset %llu): %s\n", path, (unsigned long long)it->index,
            (unsigned long long)it->off, dg.reason[0] ? dg.reason : cad_strerror(rc));
  } else {
    fwrite(out.data, 1, out.len, stdout);
    if (out.len && out.data[out.len - 1] != '\n') putchar('\n');
  }
  cad_buf_free(&out);
  return rc ? 1 : 0;
}

static int convert_file(fhir_cli_t *f, const char *path) {
  cad__archive_t ar;
  int rc = cad__archive_init(&ar, "fhir");
  if (!rc) rc = cad__archive_add_file(&ar, path);
  ar.all_items = true;
  int status = 0;
  cad__archive_item_t it;
  while (!rc && (rc = cad__archive_next(&ar, &it)) == 1) {
    rc = 0;
    if (it.kind == CAD_HL7_ITEM_MESSAGE) {
      if (on_message(f, path, &it)) status = 1;
    } else if (it.kind != CAD_HL7_ITEM_ENVELOPE) {
      fprintf(stderr, "%s: offset %llu: %s (%zu bytes skipped)\n", path, (unsigned long long)it.off,
              cad_strerror(it.err), it.len);
      status = 1;
    }
  }
  if (rc < 0) {
    fprintf(stderr, "caduceus fhir: %s: %s\n", path, cad_strerror(rc));
    status = 1;
  }
  if (ar.read_errors) status = 1;
  cad__archive_free(&ar);
  return status;
}

/* --config: the configuration's fhir: settings. */
static int load_config(fhir_cli_t *f) {
  char *err = NULL;
  int rc = cad_config_load(f->config, &f->cfg, &err);
  if (rc) {
    if (err && *err) fputs(err, stderr);
    else fprintf(stderr, "caduceus fhir: %s: %s\n", f->config, cad_strerror(rc));
    free(err);
    return 1;
  }
  free(err);
  const cad_conf_fhir_t *cf = &f->cfg->fhir;
  for (size_t i = 0; i < cf->nsystems && f->nsystems < MAX_SYSTEMS; i++)
    f->systems[f->nsystems++] = cf->systems[i];
  if (cf->tz && !f->opts.tz) f->opts.tz = cf->tz;
  return 0;
}

static int add_system(fhir_cli_t *f, char *arg) {
  char *eq = strchr(arg, '=');
  if (!eq || eq == arg || !eq[1] || f->nsystems >= MAX_SYSTEMS) {
    fprintf(stderr, "caduceus fhir: --system expects AUTHORITY=URI (at most %d), got '%s'\n",
            MAX_SYSTEMS, arg);
    return 2;
  }
  *eq = 0;
  f->systems[f->nsystems].authority = arg;
  f->systems[f->nsystems++].uri = eq + 1;
  return 0;
}

int cad_cli_fhir(int argc, char **argv) {
  static const struct option opts[] = {
      {"format", required_argument, 0, 'f'}, {"config", required_argument, 0, 'c'},
      {"system", required_argument, 0, 's'}, {"timezone", required_argument, 0, 'z'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  static fhir_cli_t f;
  memset(&f, 0, sizeof f);
  f.format = CAD_FORMAT_FHIR;
  f.opts.pretty = true;
  char *cli_systems[MAX_SYSTEMS];
  size_t ncli = 0;
  int o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "f:c:s:z:h", opts, NULL)) != -1) {
    switch (o) {
      case 'f':
        if (cad_format_parse(optarg, &f.format)) {
          fprintf(stderr, "caduceus fhir: --format: expected fhir, json, xml or er7, got '%s'\n",
                  optarg);
          return 2;
        }
        break;
      case 'c': f.config = optarg; break;
      case 's':
        if (ncli >= MAX_SYSTEMS) {
          fprintf(stderr, "caduceus fhir: at most %d --system options\n", MAX_SYSTEMS);
          return 2;
        }
        cli_systems[ncli++] = optarg;
        break;
      case 'z': f.opts.tz = optarg; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  if (f.config && load_config(&f)) return 1;
  int status = 0;
  for (size_t i = 0; i < ncli && !status; i++) status = add_system(&f, cli_systems[i]);
  if (!status) {
    f.opts.systems = f.systems;
    f.opts.nsystems = f.nsystems;
    for (int i = optind; i < argc; i++)
      if (convert_file(&f, argv[i])) status = 1;
  }
  cad_config_free(f.cfg);
  return status;
}
