/* cli_check.c - `caduceus check CONFIG`: validate and summarise a configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cad_error.h"
#include "hl7_charset.h"
#include "cli.h"
#include "config.h"
#include "mllp_listener.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus check [--quiet] CONFIG\n"
          "\n"
          "Read CONFIG (and every file it includes), check every key, and print a\n"
          "summary of the channels and destinations it defines.  Nothing is started:\n"
          "no port is opened and no file is written.\n"
          "\n"
          "  -q, --quiet   print nothing on success\n"
          "  -h, --help    show this help\n"
          "\n"
          "Each problem is printed to stderr as FILE:LINE:COLUMN: MESSAGE.\n"
          "Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.\n");
}

static const char *ack_name(cad_ack_style_t m) {
  switch (m) {
    case CAD_ACK_STYLE_AUTO:
      return "auto (original or enhanced, as each message's MSH-15/MSH-16 ask)";
    case CAD_ACK_STYLE_ORIGINAL: return "original (MSA-1 AA / AE / AR)";
    case CAD_ACK_STYLE_ENHANCED: return "enhanced (MSA-1 CA / CE / CR)";
  }
  return "?";
}

static const char *level_name(cad_log_level_t l) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  return (unsigned)l < 4 ? names[l] : "?";
}

static void print_listen(const cad_conf_listen_t *l) {
  if (strchr(l->host, ':')) printf("[%s]:%d", l->host, l->port);
  else printf("%s:%d", l->host, l->port);
}

/* One channel: how it takes messages, answers and routes them. */
static void print_channel(const cad_config_t *c, const cad_conf_channel_t *ch) {
  char a[32], b[32];
  printf("\nchannel '%s'  (%s:%d)\n", ch->name, ch->pos.file, ch->pos.line);
  if (ch->listen_dir.enabled)
    printf("  listen_dir  %s, files matching \"%s\"%s\n", ch->listen_dir.dir,
           ch->listen_dir.pattern ? ch->listen_dir.pattern : "*",
           ch->listen_dir.stable_ms ? "" : ", taken at once");
  if (ch->listen_sftp.enabled)
    printf("  listen_sftp %s@%s:%d %s, every %llu ms, host key checked against %s\n",
           ch->listen_sftp.conn.user, ch->listen_sftp.conn.host, ch->listen_sftp.conn.port,
           ch->listen_sftp.dir, (unsigned long long)ch->listen_sftp.poll_ms,
           ch->listen_sftp.conn.known_hosts);
  if (ch->kafka.enabled)
    printf("  kafka       topic %s, group %s, brokers %s; offsets committed once durable\n",
           ch->kafka.topic, ch->kafka.group, ch->kafka.brokers);
  if (ch->nlisten) {
    printf("  listen      ");
    for (size_t j = 0; j < ch->nlisten; j++) {
      if (j) printf(", ");
      print_listen(&ch->listen[j]);
    }
    if (ch->tls.enabled)
      printf("  (MLLP over TLS %s%s, certificate %s%s)\n",
             ch->tls.opts.min_version == CAD_TLS_V1_3 ? "1.3+" : "1.2+",
             ch->tls.opts.require_client_cert ? ", client certificates required" : "",
             ch->tls.opts.cert_file, ch->tls.opts.nallowed ? ", named clients only" : "");
    else printf("  (MLLP)\n");
  }
  if (ch->http.enabled)
    printf("  listen_http %s://%s%s  (HL7 v2 POSTed, max_body %s%s%s)\n",
           ch->http.tls.enabled ? "https" : "http", ch->http.listen, ch->http.path,
           cad_config_format_size(ch->http.max_body, a, sizeof a),
           ch->http.tls.opts.require_client_cert ? ", client certificates required" : "",
           ch->http.nallow ? ", allow-listed addresses only" : "");
  static const char *const policies[] = {"persisted (after the disk)",
                                         "received (before the disk: can lose messages)",
                                         "delivered (after the destinations)"};
  printf("  ack         %s; policy %s\n", ack_name(ch->listener.ack_style),
         policies[ch->ack_policy]);
  if (ch->listener.nallow)
    printf("  allow       %zu client address range(s); others are refused\n",
           ch->listener.nallow);
  printf("  limits      max_message_size %s, max_connections %u\n",
         cad_config_format_size(ch->listener.max_frame, a, sizeof a),
         ch->listener.max_connections);
  printf("  timeouts    idle %s, mid-frame %s\n",
         ch->listener.idle_timeout_ms
             ? cad_config_format_duration(ch->listener.idle_timeout_ms, a, sizeof a)
             : "none",
         cad_config_format_duration(ch->listener.frame_timeout_ms, b, sizeof b));
  if (ch->charset)
    printf("  charset     %s for messages without MSH-18 (routes see UTF-8)\n",
           cad_charset_name(ch->charset));
  size_t nr = cad_routes_count(ch->routes);
  if (ch->nto) {
    printf("  to          ");
    for (size_t j = 0; j < ch->nto; j++) printf("%s%s", j ? ", " : "", c->dests[ch->to[j]].name);
    printf("\n");
  } else {
    printf("  routes      %zu:", nr);
    for (size_t j = 0; j < nr; j++) printf("%s %s", j ? "," : "", cad_routes_name(ch->routes, j));
    printf("\n");
  }
}

/* What a destination does with a message: the line after its name. */
static void print_dest_kind(const cad_conf_dest_t *d) {
  char a[32], b[32];
  const cad_file_dest_opts_t *fo = &d->file;
  if (fo->dir && fo->batch.enabled) {
    printf(
        "  writes      HL7 batch files in %s named \"%s\" (UTC), each at most %u messages "
        "or %s, written after %s\n",
        fo->dir, fo->batch.name ? fo->batch.name : "", fo->batch.max_messages,
        cad_config_format_size(fo->batch.max_bytes, a, sizeof a),
        cad_config_format_duration(fo->batch.max_age_ms, b, sizeof b));
  } else if (fo->dir) {
    size_t n = strlen(fo->dir);
    printf("  writes      one file per message in %s%s, named \"%s\"\n", fo->dir,
           n && fo->dir[n - 1] == '/' ? "" : "/", fo->name_tmpl);
  } else if (d->type == CAD_DEST_SFTP && d->sftp.batch.enabled) {
    printf(
        "  writes      HL7 batch files over SFTP to %s@%s:%d %s named \"%s\" (UTC), each at "
        "most %u messages or %s, closed after %s, made in %s; host key checked against %s\n",
        d->sftp.conn.user, d->sftp.conn.host, d->sftp.conn.port, d->sftp.dir,
        d->sftp.batch.name ? d->sftp.batch.name : "", d->sftp.batch.max_messages,
        cad_config_format_size(d->sftp.batch.max_bytes, a, sizeof a),
        cad_config_format_duration(d->sftp.batch.max_age_ms, b, sizeof b),
        d->sftp.stage_dir ? d->sftp.stage_dir : "", d->sftp.conn.known_hosts);
  } else if (d->type == CAD_DEST_SFTP) {
    printf(
        "  writes      one file per message over SFTP to %s@%s:%d %s, named \"%s\"; host "
        "key checked against %s\n",
        d->sftp.conn.user, d->sftp.conn.host, d->sftp.conn.port, d->sftp.dir, d->sftp.name_tmpl,
        d->sftp.conn.known_hosts);
  } else if (fo->append_path) {
    printf("  writes      every message appended to %s\n", fo->append_path);
  } else if (d->type == CAD_DEST_MLLP) {
    printf("  sends       MLLP%s to %s:%d, ACK timeout %s; AE: %s, AR: %s\n",
           d->mllp.tls_enabled ? " over TLS" : "", d->mllp.sender.host, d->mllp.sender.port,
           cad_config_format_duration(d->mllp.sender.ack_timeout_ms, a, sizeof a),
           d->mllp.sender.ae_dead_letter ? "dead letter" : "retry",
           d->mllp.sender.ar_dead_letter ? "dead letter" : "retry");
  } else if (d->type == CAD_DEST_KAFKA) {
    printf("  produces    to topic %s on %s, key %s; idempotent, acks=all\n", d->kafka.topic,
           d->kafka.brokers, d->kafka.key_path);
  } else if (d->type == CAD_DEST_POSTGRES) {
    printf(
        "  runs        SQL on PostgreSQL (%s%s), %s, %zu parameter(s), up to %u messages per "
        "transaction\n",
        d->postgres.conninfo_env ? "connection string from $" : "libpq's environment",
        d->postgres.conninfo_env ? d->postgres.conninfo_env : "",
        d->postgres.rows ? "one row per segment" : "one row per message", d->postgres.nparams,
        d->postgres.batch);
  } else if (d->type == CAD_DEST_HTTP) {
    printf("  sends       HTTP %s to %s, timeout %s%s%s\n",
           d->http.method == CAD_HTTP_PUT ? "PUT" : "POST", d->http.url,
           cad_config_format_duration(d->http.timeout_ms, a, sizeof a),
           d->http.oauth_enabled  ? ", OAuth2 client credentials"
           : d->http.auth_enabled ? ", credentials from the environment"
                                  : "",
           d->http.tls_enabled && d->http.cert_file ? ", client certificate" : "");
  }
}

/* One destination: its kind, delivery policy, lanes and encoding. */
static void print_dest(const cad_config_t *c, size_t i) {
  const cad_conf_dest_t *d = &c->dests[i];
  char a[32], b[32];
  bool used = false;
  for (size_t j = 0; j < c->nchannels && !used; j++)
    for (size_t k = 0; k < c->channels[j].nto; k++) used |= c->channels[j].to[k] == i;
  /* Routes name their destinations themselves: only `to:` is checked here. */
  for (size_t j = 0; j < c->nchannels && !used; j++) used |= c->channels[j].nto == 0;
  printf("\ndestination '%s'  (%s:%d)%s\n", d->name, d->pos.file, d->pos.line,
         used ? "" : "  -- not used by any channel");
  print_dest_kind(d);
  printf("  delivery    in order; retry from %s up to %s, %u attempts, then %s",
         cad_config_format_duration(d->retry_initial_ms, a, sizeof a),
         cad_config_format_duration(d->retry_max_ms, b, sizeof b), d->retry_attempts,
         d->on_failure == CAD_ON_FAILURE_DEAD_LETTER ? "dead letter" : "block and keep retrying");
  if (d->max_backlog) printf("; at most %llu waiting", (unsigned long long)d->max_backlog);
  printf("\n");
  if (d->lanes > 1 && d->order_by)
    printf("  lanes       %u in parallel, in order per key %s (docs/lanes.md)\n", d->lanes,
           d->order_by);
  if (d->encoding)
    printf("  encoding    %s, MSH-18 rewritten; a character it lacks: %s\n",
           cad_charset_name(d->encoding),
           d->encoding == CAD_CS_UTF8             ? "none (UTF-8 holds every character)"
           : d->unrepresentable == CAD_CS_ESCAPE  ? "escaped as \\Xhh\\"
           : d->unrepresentable == CAD_CS_REPLACE ? "replaced by ?"
                                                  : "the message is refused");
}

static void print_summary(const cad_config_t *c) {
  char a[32], b[32];
  size_t nlisten = 0;
  printf("%s: OK\n", c->path);
  if (c->nfiles > 1) {
    printf("  files       ");
    for (size_t i = 0; i < c->nfiles; i++) printf("%s%s", i ? ", " : "", c->files[i]);
    printf("\n");
  }
  printf("  engine      data_dir %s, log_level %s, log_format %s, stats_interval %s\n", c->data_dir,
         level_name(c->log_level), c->log_format == CAD_LOG_JSON ? "json" : "kv",
         c->stats_interval_ms ? cad_config_format_duration(c->stats_interval_ms, a, sizeof a)
                              : "0 (off)");
  printf("  queue       segments of %s, delivered messages kept %s",
         cad_config_format_size(c->queue_segment_bytes, a, sizeof a),
         cad_config_format_duration(c->queue_retain_ms, b, sizeof b));
  if (c->queue_retain_bytes)
    printf(" (at most %s)", cad_config_format_size(c->queue_retain_bytes, a, sizeof a));
  printf("\n");
  for (size_t i = 0; i < c->nchannels; i++) {
    print_channel(c, &c->channels[i]);
    nlisten += c->channels[i].nlisten;
  }
  for (size_t i = 0; i < c->ndests; i++) print_dest(c, i);
  if (c->admin.enabled)
    printf("\nadmin API     %s://%s%s%s:%d  metrics %s, %zu token%s\n",
           c->admin.tls.enabled ? "https" : "http", strchr(c->admin.host, ':') ? "[" : "",
           c->admin.host, strchr(c->admin.host, ':') ? "]" : "", c->admin.port,
           c->admin.open_metrics ? "open" : "need a token", c->admin.ntokens,
           c->admin.ntokens == 1 ? "" : "s");
  printf("\n%zu channel%s, %zu listener%s, %zu destination%s\n", c->nchannels,
         c->nchannels == 1 ? "" : "s", nlisten, nlisten == 1 ? "" : "s", c->ndests,
         c->ndests == 1 ? "" : "s");
}

int cad_cli_check(int argc, char **argv) {
  const char *path = NULL;
  bool quiet = false, opts = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
      usage(stdout);
      return 0;
    } else if (opts && (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)) {
      quiet = true;
    } else if (opts && strcmp(a, "--") == 0) {
      opts = false;
    } else if (opts && a[0] == '-' && a[1] != 0) {
      fprintf(stderr, "caduceus check: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    } else if (path) {
      fprintf(stderr, "caduceus check: one configuration file at a time ('%s' and '%s')\n", path,
              a);
      usage(stderr);
      return 2;
    } else {
      path = a;
    }
  }
  if (!path) {
    fprintf(stderr, "caduceus check: missing CONFIG\n");
    usage(stderr);
    return 2;
  }
  cad_config_t *c = NULL;
  char *errors = NULL;
  int rc = cad_config_load(path, &c, &errors);
  if (rc != 0) {
    if (errors) fputs(errors, stderr);
    if (rc == CAD_E_CONFIG) fprintf(stderr, "caduceus check: %s is not valid\n", path);
    else if (!errors) fprintf(stderr, "caduceus check: %s: %s\n", path, cad_strerror(rc));
    free(errors);
    return 1;
  }
  /* As `run` would: every connection needs a descriptor (mllp_listener.h). */
  uint64_t limit, need;
  if (cad_mllp_raise_fd_limit(cad_config_connections(c), &limit, &need) != 0) {
    fprintf(stderr,
            "%s: max_connections of all listeners need %llu open files with the descriptors "
            "kept for the store and destinations, but the hard limit here is %llu: lower "
            "max_connections or raise the limit (ulimit -Hn, LimitNOFILE=); `run` refuses it\n",
            path, (unsigned long long)need, (unsigned long long)limit);
    cad_config_free(c);
    return 1;
  }
  if (!quiet) print_summary(c);
  cad_config_free(c);
  return 0;
}
