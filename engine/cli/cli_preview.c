/* cli_preview.c - `caduceus preview`: run archives through a channel's
 * routes offline (cad_routes_eval, no socket, no queue) and say what the
 * configuration would do; with a baseline configuration, what changes.
 *
 * Streaming: each message is evaluated against the new (and the baseline)
 * routes in one arena reset per message, its changes printed at once, and
 * only counters kept, so an archive of any size runs in constant memory.
 * Destinations are matched between the two configurations by name.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "chan_route.h"
#include "cad_json.h"
#include "cli.h"
#include "cli_archive.h"
#include "config.h"
#include "hl7.h"
#include "routes.h"

#define NDISP 5

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus preview --config NEW.yaml [options] ARCHIVE...\n"
          "\n"
          "Run the messages of archives (files, directories, -; plain, batches, MLLP\n"
          "captures, gzip) through a channel's routes without opening any socket, and\n"
          "report per destination how many messages would be sent, and how many would\n"
          "be filtered, rejected, refused by a failing transform (error) or\n"
          "dead-lettered.  With --baseline, also which messages change and how: the\n"
          "disposition, the destinations gained and lost, and every value that differs\n"
          "in what a destination receives, by path (OBX[2]-3.1: \"GLU\" -> \"2345-7\").\n"
          "A message that would fail (rejected, error, dead letter) is listed with\n"
          "the reason (and its HL7 error code), with or without --baseline.\n"
          "\n"
          "  --config FILE        the configuration to preview (required)\n"
          "  --baseline FILE      the configuration it replaces, to compare with\n"
          "  --channel NAME       the channel (required when there are several)\n"
          "  --max-changes N      print at most N changed messages (default 100;\n"
          "                       all are counted)\n"
          "  --json               one JSON document on stdout instead of text\n"
          "  -h, --help           show this help\n"
          "\n"
          "Output contains message values (it is about your data): treat it like the\n"
          "archive.  Exit status: 0 done (whatever the differences), 1 an archive or a\n"
          "configuration could not be read, 2 usage error.\n");
}

typedef struct side {
  cad_config_t *cfg;
  const cad_conf_channel_t *ch;
  uint64_t disp[NDISP];
  uint64_t *sent; /* per destination of cfg */
} side_t;

typedef struct pv {
  side_t now, base;
  bool have_base, json;
  uint64_t max_changes, changed, printed, messages;
  bool first_change;
  cad_buf_t line; /* the change being described */
  int nparts;
  const char *src;
  uint64_t off;
  cad_str_t ctl;
} pv_t;

/* ---- output helpers ------------------------------------------------------ */

static void json_str(FILE *f, const char *p, size_t n) { cad_json_fput(f, p, n); }

static void text_str(cad_buf_t *b, cad_str_t v) {
  cad_buf_putc(b, '"');
  for (size_t i = 0; i < v.len && i < 80; i++) {
    unsigned char c = (unsigned char)v.p[i];
    if (c == '"' || c == '\\') cad_buf_printf(b, "\\%c", c);
    else if (c < 0x20 || c == 0x7f) cad_buf_printf(b, "\\x%02x", c);
    else cad_buf_putc(b, (char)c);
  }
  if (v.len > 80) cad_buf_puts(b, "...");
  cad_buf_putc(b, '"');
}

/* One part of the current message's change (text or JSON fragment). */
static void part_begin(pv_t *pv) {
  if (pv->json) cad_buf_puts(&pv->line, pv->nparts ? "," : "");
  else cad_buf_puts(&pv->line, "\n    ");
  pv->nparts++;
}

static void json_buf_str(cad_buf_t *b, const char *p, size_t n) { cad_json_str(b, p, n); }

static void emit_value(pv_t *pv, const char *dest, const char *path, cad_str_t was, cad_str_t now) {
  part_begin(pv);
  if (pv->json) {
    cad_buf_puts(&pv->line, "{\"destination\":");
    json_buf_str(&pv->line, dest, strlen(dest));
    cad_buf_puts(&pv->line, ",\"path\":");
    json_buf_str(&pv->line, path, strlen(path));
    cad_buf_puts(&pv->line, ",\"old\":");
    json_buf_str(&pv->line, was.p, was.len);
    cad_buf_puts(&pv->line, ",\"new\":");
    json_buf_str(&pv->line, now.p, now.len);
    cad_buf_putc(&pv->line, '}');
  } else {
    cad_buf_printf(&pv->line, "%s: %s: ", dest, path);
    text_str(&pv->line, was);
    cad_buf_puts(&pv->line, " -> ");
    text_str(&pv->line, now);
  }
}

static void emit_note(pv_t *pv, const char *dest, const char *what) {
  part_begin(pv);
  if (pv->json) {
    cad_buf_puts(&pv->line, "{\"destination\":");
    json_buf_str(&pv->line, dest, strlen(dest));
    cad_buf_puts(&pv->line, ",\"note\":");
    json_buf_str(&pv->line, what, strlen(what));
    cad_buf_putc(&pv->line, '}');
  } else {
    cad_buf_printf(&pv->line, "%s: %s", dest, what);
  }
}

/* ---- differences by path ------------------------------------------------- */

typedef struct diff_ctx {
  pv_t *pv;
  const char *dest;
} diff_ctx_t;

static void on_diff(void *ctx, const cad_hl7_diff_t *d) {
  diff_ctx_t *dc = ctx;
  if (d->path) {
    emit_value(dc->pv, dc->dest, d->path, d->a, d->b);
    return;
  }
  char what[96];
  snprintf(what, sizeof what, "segment %u: %s -> %s", d->seg, d->a_seg ? d->a_seg->name : "(none)",
           d->b_seg ? d->b_seg->name : "(none)");
  emit_note(dc->pv, dc->dest, what);
}

static void diff_msgs(pv_t *pv, const char *dest, cad_str_t was, cad_str_t now, cad_arena_t *a) {
  cad_hl7_msg_t ma, mb;
  if (cad_hl7_parse(&ma, was.p, was.len, a, NULL, NULL) != 0 ||
      cad_hl7_parse(&mb, now.p, now.len, a, NULL, NULL) != 0) {
    emit_note(pv, dest, "the bytes differ (a version does not parse)");
    return;
  }
  diff_ctx_t dc = {pv, dest};
  if (cad_hl7_diff(&ma, &mb, on_diff, &dc) == 0)
    emit_note(pv, dest, "the bytes differ (same values by path)");
}

/* ---- per message ---------------------------------------------------------- */

static const cad_route_out_t *find_out(const cad_route_result_t *r, const side_t *s,
                                       const char *name) {
  for (size_t i = 0; i < r->nouts; i++)
    if (strcmp(cad_routes_dest_name(s->ch->routes, r->outs[i].dest), name) == 0) return &r->outs[i];
  return NULL;
}

static bool is_failure(cad_route_disposition_t d) {
  return d == CAD_ROUTE_REJECTED || d == CAD_ROUTE_ERROR || d == CAD_ROUTE_DEAD_LETTER;
}

/* Why a message fails (rejected, error, dead letter): the routes' or the
 * parser's PHI-free reason and its HL7 table 0357 code. */
static void fail_reason(const cad_route_result_t *r, char *out, size_t cap) {
  snprintf(out, cap, "%s (HL7 %d)", r->diag.reason[0] ? r->diag.reason : "no reason given",
           r->diag.hl7_code ? r->diag.hl7_code : 207);
}

/* One line (or JSON entry) for a message that changes, or (no baseline)
 * that fails; `reason` (may be NULL) says why its new disposition fails. */
static void flush_change(pv_t *pv, const char *dnow, const char *dwas, const char *reason) {
  if (!pv->have_base && !pv->json && pv->changed == 0)
    printf("failed messages (source @offset control id: disposition: reason):\n");
  pv->changed++;
  if (pv->printed >= pv->max_changes) return;
  pv->printed++;
  char ctl[80];
  size_t cl = pv->ctl.len < sizeof ctl - 1 ? pv->ctl.len : sizeof ctl - 1;
  memcpy(ctl, pv->ctl.p, cl);
  ctl[cl] = 0;
  if (pv->json) {
    printf("%s\n    {\"source\":", pv->first_change ? "" : ",");
    json_str(stdout, pv->src, strlen(pv->src));
    printf(",\"offset\":%llu,\"control_id\":", (unsigned long long)pv->off);
    json_str(stdout, ctl, cl);
    printf(",\"disposition\":{\"old\":\"%s\",\"new\":\"%s\"}", dwas, dnow);
    if (reason) {
      printf(",\"reason\":");
      json_str(stdout, reason, strlen(reason));
    }
    printf(",\"changes\":[%s]}", cad_buf_cstr(&pv->line) ? cad_buf_cstr(&pv->line) : "");
  } else {
    printf("  %s @%llu %s", pv->src, (unsigned long long)pv->off, cl ? ctl : "-");
    if (strcmp(dnow, dwas) != 0) printf(": %s -> %s", dwas, dnow);
    else if (reason) printf(": %s", dnow);
    if (reason) printf(": %s", reason);
    printf("%s\n", cad_buf_cstr(&pv->line) ? cad_buf_cstr(&pv->line) : "");
  }
  pv->first_change = false;
}

static int one_message(pv_t *pv, const cad__archive_t *ar, const cad__archive_item_t *it,
                       cad_arena_t *a) {
  cad_arena_reset(a);
  pv->messages++;
  cad_route_result_t rn, rb;
  int rc = cad_chan_route(pv->now.ch, it->p, it->len, NULL, a, &rn);
  if (rc < 0 && rc != CAD_E_NOMEM) return rc;
  pv->now.disp[rn.disposition]++;
  for (size_t i = 0; i < rn.nouts; i++) pv->now.sent[rn.outs[i].dest]++;
  char why[160];
  fail_reason(&rn, why, sizeof why);
  const char *reason = is_failure(rn.disposition) ? why : NULL;
  if (!pv->have_base) {
    if (reason) {
      cad_buf_clear(&pv->line);
      pv->src = ar->src[it->src];
      pv->off = it->off;
      cad__msh_field(it->p, it->len, 10, &pv->ctl);
      const char *d = cad_route_disposition_name(rn.disposition);
      flush_change(pv, d, d, reason);
    }
    return 0;
  }
  rc = cad_chan_route(pv->base.ch, it->p, it->len, NULL, a, &rb);
  if (rc < 0 && rc != CAD_E_NOMEM) return rc;
  pv->base.disp[rb.disposition]++;
  for (size_t i = 0; i < rb.nouts; i++) pv->base.sent[rb.outs[i].dest]++;

  cad_buf_clear(&pv->line);
  pv->nparts = 0;
  pv->src = ar->src[it->src];
  pv->off = it->off;
  cad__msh_field(it->p, it->len, 10, &pv->ctl);
  const char *dn = cad_route_disposition_name(rn.disposition);
  const char *db = cad_route_disposition_name(rb.disposition);
  bool changed = rn.disposition != rb.disposition;
  /* destinations gained and changed */
  for (size_t i = 0; i < rn.nouts; i++) {
    const char *name = cad_routes_dest_name(pv->now.ch->routes, rn.outs[i].dest);
    bool dup = false;
    for (size_t j = 0; j < i; j++)
      if (rn.outs[j].dest == rn.outs[i].dest) dup = true;
    if (dup) continue;
    const cad_route_out_t *ob = find_out(&rb, &pv->base, name);
    if (!ob) {
      emit_note(pv, name, "gained (receives the message now, not before)");
      changed = true;
    } else if (!cad_str_eq(ob->bytes, rn.outs[i].bytes)) {
      diff_msgs(pv, name, ob->bytes, rn.outs[i].bytes, a);
      changed = true;
    }
  }
  for (size_t i = 0; i < rb.nouts; i++) {
    const char *name = cad_routes_dest_name(pv->base.ch->routes, rb.outs[i].dest);
    bool dup = false;
    for (size_t j = 0; j < i; j++)
      if (rb.outs[j].dest == rb.outs[i].dest) dup = true;
    if (dup || find_out(&rn, &pv->now, name)) continue;
    emit_note(pv, name, "lost (received the message before, not now)");
    changed = true;
  }
  if (changed) flush_change(pv, dn, db, reason);
  return 0;
}

/* ---- loading ---------------------------------------------------------------- */

static int load_side(side_t *s, const char *path, const char *channel, const char *what) {
  char *errs = NULL;
  int rc = cad_config_load(path, &s->cfg, &errs);
  if (rc) {
    fprintf(stderr, "caduceus preview: %s %s: %s\n%s", what, path, cad_strerror(rc),
            errs ? errs : "");
    free(errs);
    return -1;
  }
  free(errs);
  if (!channel && s->cfg->nchannels > 1) {
    fprintf(stderr, "caduceus preview: %s has %zu channels; choose one with --channel:", path,
            s->cfg->nchannels);
    for (size_t i = 0; i < s->cfg->nchannels; i++) fprintf(stderr, " %s", s->cfg->channels[i].name);
    fputc('\n', stderr);
    return -1;
  }
  for (size_t i = 0; i < s->cfg->nchannels; i++)
    if (!channel || strcmp(s->cfg->channels[i].name, channel) == 0) s->ch = &s->cfg->channels[i];
  if (!s->ch || !s->ch->routes) {
    fprintf(stderr, "caduceus preview: %s has no channel '%s'\n", path, channel ? channel : "?");
    return -1;
  }
  s->sent = calloc(s->cfg->ndests + 1, sizeof *s->sent);
  return s->sent ? 0 : -1;
}

static uint64_t sent_by_name(const side_t *s, const char *name, bool *found) {
  *found = false;
  if (!s->cfg) return 0;
  for (size_t d = 0; d < s->cfg->ndests; d++)
    if (strcmp(cad_routes_dest_name(s->ch->routes, d), name) == 0) {
      *found = true;
      return s->sent[d];
    }
  return 0;
}

static void print_summary(pv_t *pv, const cad__archive_t *ar, const char *cfg_path,
                          const char *base_path) {
  const char *dnames[NDISP] = {"deliver", "filtered", "rejected", "error", "dead_letter"};
  if (pv->json) {
    printf("%s],\n  \"channel\": ", pv->first_change ? "" : "\n  ");
    json_str(stdout, pv->now.ch->name, strlen(pv->now.ch->name));
    printf(",\n  \"config\": ");
    json_str(stdout, cfg_path, strlen(cfg_path));
    if (base_path) {
      printf(",\n  \"baseline\": ");
      json_str(stdout, base_path, strlen(base_path));
    }
    printf(",\n  \"messages\": %llu,\n  \"read_errors\": %llu,\n  \"dispositions\": {",
           (unsigned long long)pv->messages, (unsigned long long)ar->read_errors);
    for (int k = 0; k < NDISP; k++) {
      printf("%s\"%s\": ", k ? ", " : "", dnames[k]);
      if (pv->have_base)
        printf("{\"new\": %llu, \"old\": %llu}", (unsigned long long)pv->now.disp[k],
               (unsigned long long)pv->base.disp[k]);
      else printf("%llu", (unsigned long long)pv->now.disp[k]);
    }
    printf("},\n  \"destinations\": {");
    int nd = 0;
    for (size_t d = 0; d < pv->now.cfg->ndests; d++) {
      const char *name = cad_routes_dest_name(pv->now.ch->routes, d);
      bool f;
      uint64_t old = sent_by_name(&pv->base, name, &f);
      printf("%s\n    ", nd++ ? "," : "");
      json_str(stdout, name, strlen(name));
      if (pv->have_base)
        printf(": {\"sent\": %llu, \"baseline_sent\": %llu}", (unsigned long long)pv->now.sent[d],
               (unsigned long long)old);
      else printf(": {\"sent\": %llu}", (unsigned long long)pv->now.sent[d]);
    }
    for (size_t d = 0; pv->have_base && d < pv->base.cfg->ndests; d++) {
      const char *name = cad_routes_dest_name(pv->base.ch->routes, d);
      bool f;
      sent_by_name(&pv->now, name, &f);
      if (f) continue;
      printf("%s\n    ", nd++ ? "," : "");
      json_str(stdout, name, strlen(name));
      printf(": {\"sent\": 0, \"baseline_sent\": %llu, \"removed\": true}",
             (unsigned long long)pv->base.sent[d]);
    }
    printf("\n  }");
    printf(",\n  \"%s\": %llu", pv->have_base ? "changed" : "failed",
           (unsigned long long)pv->changed);
    printf("\n}\n");
    return;
  }
  printf("%spreview of channel %s (%s%s%s): %llu messages\n", pv->changed ? "\n" : "",
         pv->now.ch->name, cfg_path, base_path ? " against " : "", base_path ? base_path : "",
         (unsigned long long)pv->messages);
  printf("  %-24s %12s%s\n", "destination", "sent", pv->have_base ? "     baseline" : "");
  for (size_t d = 0; d < pv->now.cfg->ndests; d++) {
    const char *name = cad_routes_dest_name(pv->now.ch->routes, d);
    bool f;
    uint64_t old = sent_by_name(&pv->base, name, &f);
    printf("  %-24s %12llu", name, (unsigned long long)pv->now.sent[d]);
    if (pv->have_base) printf(" %12llu%s", (unsigned long long)old, f ? "" : " (new)");
    printf("\n");
  }
  for (size_t d = 0; pv->have_base && d < pv->base.cfg->ndests; d++) {
    const char *name = cad_routes_dest_name(pv->base.ch->routes, d);
    bool f;
    sent_by_name(&pv->now, name, &f);
    if (!f)
      printf("  %-24s %12s %12llu (removed)\n", name, "-", (unsigned long long)pv->base.sent[d]);
  }
  printf("  by disposition\n");
  for (int k = 0; k < NDISP; k++) {
    printf("  %-24s %12llu", k == 0 ? "delivered" : dnames[k], (unsigned long long)pv->now.disp[k]);
    if (pv->have_base) printf(" %12llu", (unsigned long long)pv->base.disp[k]);
    printf("\n");
  }
  if (pv->have_base || pv->changed) {
    printf("  %llu message%s %s", (unsigned long long)pv->changed, pv->changed == 1 ? "" : "s",
           pv->have_base ? "would change" : "would fail");
    if (pv->changed > pv->printed)
      printf(" (%llu shown; --max-changes to see more)", (unsigned long long)pv->printed);
    printf("\n");
  }
  if (ar->read_errors)
    printf("  %llu source(s) could not be read completely\n", (unsigned long long)ar->read_errors);
}

int cad_cli_preview(int argc, char **argv) {
  const char *cfg_path = NULL, *base_path = NULL, *channel = NULL;
  pv_t pv;
  memset(&pv, 0, sizeof pv);
  pv.max_changes = 100;
  pv.first_change = true;
  const char **args = calloc((size_t)argc + 1, sizeof *args);
  size_t nargs = 0;
  int status = 2;
  cad__archive_t ar;
  cad_arena_t arena;
  cad_arena_init(&arena, 65536, (size_t)256 << 20);
  memset(&ar, 0, sizeof ar);
  if (!args) return 1;
  bool opts = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!opts || a[0] != '-' || !a[1]) {
      args[nargs++] = a;
    } else if (strcmp(a, "--") == 0) {
      opts = false;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      status = 0;
      goto out;
    } else if (strcmp(a, "--json") == 0) {
      pv.json = true;
    } else if (strcmp(a, "--config") == 0 || strcmp(a, "--baseline") == 0 ||
               strcmp(a, "--channel") == 0 || strcmp(a, "--max-changes") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "caduceus preview: %s needs a value\n", a);
        goto out;
      }
      const char *v = argv[++i];
      if (a[2] == 'c' && a[3] == 'o') cfg_path = v;
      else if (a[2] == 'b') base_path = v;
      else if (a[2] == 'c') channel = v;
      else {
        char *end = NULL;
        unsigned long long n = strtoull(v, &end, 10);
        if (!*v || *end || v[0] == '-') {
          fprintf(stderr, "caduceus preview: --max-changes needs a count\n");
          goto out;
        }
        pv.max_changes = n;
      }
    } else {
      fprintf(stderr, "caduceus preview: unknown option '%s'\n", a);
      usage(stderr);
      goto out;
    }
  }
  if (!cfg_path || nargs == 0) {
    fprintf(stderr, "caduceus preview: %s\n",
            !cfg_path ? "--config FILE is required" : "no archive given");
    usage(stderr);
    goto out;
  }
  status = 1;
  if (load_side(&pv.now, cfg_path, channel, "config") != 0) goto out;
  if (base_path) {
    if (load_side(&pv.base, base_path, channel ? channel : pv.now.ch->name, "baseline") != 0)
      goto out;
    pv.have_base = true;
  }
  if (cad__archive_init(&ar, "preview") != 0 || cad__archive_add_sources(&ar, args, nargs) != 0)
    goto out;
  if (pv.json) printf("{\n  \"changes\": [");
  else if (pv.have_base) printf("changed messages (source @offset control id: what changes):\n");
  cad__archive_item_t it;
  int rc;
  while ((rc = cad__archive_next(&ar, &it)) == 1) {
    rc = one_message(&pv, &ar, &it, &arena);
    if (rc < 0) break;
  }
  if (rc < 0) {
    fprintf(stderr, "caduceus preview: %s\n", cad_strerror(rc));
    goto out;
  }
  print_summary(&pv, &ar, cfg_path, base_path);
  status = ar.read_errors ? 1 : 0;
out:
  cad__archive_free(&ar);
  cad_arena_free(&arena);
  cad_buf_free(&pv.line);
  free(pv.now.sent);
  free(pv.base.sent);
  cad_config_free(pv.now.cfg);
  cad_config_free(pv.base.cfg);
  free(args);
  return status;
}
