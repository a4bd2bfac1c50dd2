/* test_config_mllp.c - the configuration of MLLP destinations (type: mllp),
 * TLS on destinations and channels, and channel allow-lists: values,
 * defaults, and every error with its exact file:line:column text. */
#include "config.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cad_error.h"
#include "harness.h"

static char *errors_of(const char *yaml) {
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc = cad_config_load_mem("t.yaml", yaml, strlen(yaml), CAD_CONFIG_NO_INCLUDE, &c, &err);
  cad_config_free(c);
  if (rc == 0 && !err) err = strdup("");
  if (rc != 0 && !err) err = strdup("(no error text)");
  return err;
}

#define CHECK_ERRORS(yaml, want) \
  do {                           \
    char *e_ = errors_of(yaml);  \
    CHECK_STR(e_, want);         \
    free(e_);                    \
  } while (0)

static cad_config_t *load(const char *yaml) {
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc = cad_config_load_mem("t.yaml", yaml, strlen(yaml), CAD_CONFIG_NO_INCLUDE, &c, &err);
  if (rc) fprintf(stderr, "  load failed: %s\n", err ? err : "?");
  free(err);
  return c;
}

/* A configuration names TLS files that must exist (config.h): make them in
 * a new directory and work there (each test runs in its own process). */
static void tls_files_here(void) {
  static const char *const files[] = {"tls/ca.crt",
                                      "tls/client.crt",
                                      "tls/client.key",
                                      "var/tls/server.crt",
                                      "var/tls/server.key",
                                      "var/tls/ca.crt",
                                      "s.crt",
                                      "s.key",
                                      "c.crt",
                                      "a",
                                      "b",
                                      "c"};
  char dir[] = "/tmp/cad_tls_XXXXXX";
  if (!mkdtemp(dir) || chdir(dir) != 0) abort();
  if (mkdir("tls", 0700) || mkdir("var", 0700) || mkdir("var/tls", 0700)) abort();
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    FILE *f = fopen(files[i], "w");
    if (!f) abort();
    fputs("not really PEM\n", f);
    fclose(f);
  }
}

#define LAB "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: ehr\n"
#define EHR "destinations:\n  ehr: {type: mllp, host: 10.0.0.5, port: 2575}\n"

TEST(mllp_destination_defaults) {
  cad_config_t *c = load(EHR LAB);
  REQUIRE(c);
  REQUIRE(c->ndests == 1);
  const cad_conf_dest_t *d = &c->dests[0];
  CHECK_INT(d->type, CAD_DEST_MLLP);
  CHECK_STR(d->mllp.sender.host, "10.0.0.5");
  CHECK_INT(d->mllp.sender.port, 2575);
  CHECK(!d->mllp.sender.per_message);
  CHECK_INT(d->mllp.sender.connect_timeout_ms, 10000);
  CHECK_INT(d->mllp.sender.ack_timeout_ms, 30000);
  CHECK_INT(d->mllp.sender.idle_close_ms, 0);
  CHECK(!d->mllp.sender.ae_dead_letter);
  CHECK(d->mllp.sender.ar_dead_letter);
  CHECK(!d->mllp.sender.new_control_id);
  CHECK(!d->mllp.tls_enabled);
  CHECK(d->mllp.tls.ca_file == NULL && d->mllp.tls.cert_file == NULL &&
        d->mllp.sender.server_name == NULL);
  CHECK(d->file.dir == NULL && d->file.append_path == NULL && d->file.name_tmpl == NULL);
  CHECK_INT(d->retry_attempts, 10); /* the delivery keys apply to every type */
  cad_config_free(c);
}

TEST(mllp_destination_every_key) {
  tls_files_here();
  const char *y =
      "destinations:\n"
      "  ehr:\n"
      "    type: mllp\n"
      "    host: ehr.example.org\n"
      "    port: 6661\n"
      "    persistent: false\n"
      "    connect_timeout: 2s\n"
      "    ack_timeout: 1m\n"
      "    idle_close: 5m\n"
      "    on_ae: dead_letter\n"
      "    on_ar: retry\n"
      "    new_control_id: true\n"
      "    tls:\n"
      "      ca: tls/ca.crt\n"
      "      cert: tls/client.crt\n"
      "      key: tls/client.key\n"
      "      verify_hostname: false\n"
      "      server_name: ehr.internal\n"
      "    retry: {attempts: 3}\n"
      "  v6: {type: mllp, host: '[::1]', port: 2575, tls: {}}\n" LAB;
  cad_config_t *c = load(y);
  REQUIRE(c);
  const cad_conf_dest_t *d = &c->dests[0];
  CHECK_STR(d->mllp.sender.host, "ehr.example.org");
  CHECK_INT(d->mllp.sender.port, 6661);
  CHECK(d->mllp.sender.per_message);
  CHECK_INT(d->mllp.sender.connect_timeout_ms, 2000);
  CHECK_INT(d->mllp.sender.ack_timeout_ms, 60000);
  CHECK_INT(d->mllp.sender.idle_close_ms, 300000);
  CHECK(d->mllp.sender.ae_dead_letter);
  CHECK(!d->mllp.sender.ar_dead_letter);
  CHECK(d->mllp.sender.new_control_id);
  CHECK(d->mllp.tls_enabled);
  CHECK_STR(d->mllp.tls.ca_file, "tls/ca.crt");
  CHECK_STR(d->mllp.tls.cert_file, "tls/client.crt");
  CHECK_STR(d->mllp.tls.key_file, "tls/client.key");
  CHECK(!d->mllp.sender.verify_hostname);
  CHECK_STR(d->mllp.sender.server_name, "ehr.internal");
  CHECK_INT(d->retry_attempts, 3);
  const cad_conf_dest_t *v6 = &c->dests[1];
  CHECK_STR(v6->mllp.sender.host, "::1"); /* brackets dropped */
  CHECK(v6->mllp.tls_enabled);            /* `tls: {}`: TLS with every default */
  CHECK(v6->mllp.sender.verify_hostname);
  CHECK(v6->mllp.tls.ca_file == NULL);
  cad_config_free(c);
}

TEST(mllp_destination_errors) {
  tls_files_here();
  CHECK_ERRORS("destinations:\n  ehr: {type: mllp}\n" LAB,
               "t.yaml:2:3: missing 'host' in destination 'ehr' (the receiver's host name or IP "
               "address)\n"
               "t.yaml:2:3: missing 'port' in destination 'ehr' (the receiver's port)\n");
  CHECK_ERRORS(
      "destinations:\n  ehr: {type: mllp, host: 'bad host!', port: 0, persistent: maybe, "
      "on_ae: ignore, dir: x, ack_timeout: 0}\n" LAB,
      "t.yaml:2:27: host: expected a host name or IP address like ehr.example.org or "
      "10.0.0.5, got 'bad host!'\n"
      "t.yaml:2:46: port: must be from 1 to 65535, got 0\n"
      "t.yaml:2:61: persistent: expected true or false, got 'maybe'\n"
      "t.yaml:2:75: on_ae: expected one of retry or dead_letter, got 'ignore'\n"
      "t.yaml:2:83: unknown key 'dir' in destination 'ehr' (expected one of: type, host, "
      "port, persistent, connect_timeout, ack_timeout, idle_close, on_ae, on_ar, "
      "new_control_id, tls, format, retry, on_failure, max_backlog, lanes, order_by, encoding, unrepresentable)\n"
      "t.yaml:2:104: ack_timeout: must be from 100ms to 1h, got 0\n");
  CHECK_ERRORS("destinations:\n  ehr: {type: mllp, host: '[::1]', port: 70000}\n" LAB,
               "t.yaml:2:42: port: must be from 1 to 65535, got 70000\n");
  CHECK_ERRORS("destinations:\n  ehr: {type: smtp}\n" LAB,
               "t.yaml:2:15: type: expected one of file, mllp, sftp, kafka, postgres or http, got 'smtp'\n");
  CHECK_ERRORS(
      "destinations:\n  ehr: {type: mllp, host: ehr.local, port: 2575, tls: {cert: "
      "c.crt}}\n" LAB,
      "t.yaml:2:56: 'cert' and 'key' go together in tls of destination 'ehr': a client "
      "certificate needs its key\n");
  CHECK_ERRORS("destinations:\n  ehr: {type: mllp, host: h, port: 1, tls: true}\n" LAB,
               "t.yaml:2:44: expected a mapping of tls settings in tls of destination 'ehr', got "
               "'true'\n");
  CHECK_ERRORS("destinations:\n  ehr: {type: mllp, host: h, port: 1, tls: {verify: no}}\n" LAB,
               "t.yaml:2:45: unknown key 'verify' in tls of destination 'ehr' (expected one of: "
               "ca, cert, key, verify_hostname, server_name)\n");
}

TEST(channel_tls_and_allow) {
  tls_files_here();
  const char *y = EHR
      "channels:\n"
      "  lab:\n"
      "    listen: 127.0.0.1:2576\n"
      "    to: ehr\n"
      "    tls:\n"
      "      cert: var/tls/server.crt\n"
      "      key: var/tls/server.key\n"
      "      ca: var/tls/ca.crt\n"
      "      require_client_cert: true\n"
      "      allowed_clients: [lab-analyzer-1, 10.1.2.3]\n"
      "      ciphers: ECDHE+AESGCM\n"
      "      min_version: 1.3\n"
      "    allow: [10.0.0.0/8, 127.0.0.1, 'fd00::/8']\n"
      "  plain:\n"
      "    listen: 127.0.0.1:2577\n"
      "    to: ehr\n";
  cad_config_t *c = load(y);
  REQUIRE(c);
  const cad_conf_channel_t *ch = &c->channels[0];
  CHECK(ch->tls.enabled);
  CHECK_STR(ch->tls.opts.cert_file, "var/tls/server.crt");
  CHECK_STR(ch->tls.opts.key_file, "var/tls/server.key");
  CHECK_STR(ch->tls.opts.ca_file, "var/tls/ca.crt");
  CHECK(ch->tls.opts.require_client_cert);
  REQUIRE(ch->tls.opts.nallowed == 2);
  CHECK_STR(ch->tls.opts.allowed_clients[0], "lab-analyzer-1");
  CHECK_STR(ch->tls.opts.allowed_clients[1], "10.1.2.3");
  CHECK_STR(ch->tls.opts.ciphers, "ECDHE+AESGCM");
  CHECK_INT(ch->tls.opts.min_version, CAD_TLS_V1_3);
  REQUIRE(ch->listener.nallow == 3);
  CHECK_INT(ch->listener.allow[0].family, AF_INET);
  CHECK_INT(ch->listener.allow[0].prefix, 8);
  CHECK_INT(ch->listener.allow[0].addr[0], 10);
  CHECK_INT(ch->listener.allow[1].prefix, 32);
  CHECK_INT(ch->listener.allow[1].addr[3], 1);
  CHECK_INT(ch->listener.allow[2].family, AF_INET6);
  CHECK_INT(ch->listener.allow[2].prefix, 8);
  CHECK_INT(ch->listener.allow[2].addr[0], 0xfd);
  const cad_conf_channel_t *pl = &c->channels[1];
  CHECK(!pl->tls.enabled);
  CHECK(pl->tls.opts.cert_file == NULL);
  CHECK(pl->listener.allow == NULL && pl->listener.nallow == 0);
  cad_config_free(c);

  /* defaults of a minimal tls: */
  c = load(EHR
           "channels:\n  lab:\n    listen: 127.0.0.1:2576\n    to: ehr\n"
           "    tls: {cert: s.crt, key: s.key}\n");
  REQUIRE(c);
  CHECK(c->channels[0].tls.enabled);
  CHECK(!c->channels[0].tls.opts.require_client_cert);
  CHECK(c->channels[0].tls.opts.ca_file == NULL);
  CHECK_INT(c->channels[0].tls.opts.min_version, CAD_TLS_V1_2);
  cad_config_free(c);
}

TEST(channel_tls_errors) {
  tls_files_here();
  CHECK_ERRORS(EHR
               "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: ehr\n"
               "    tls: {key: s.key, require_client_cert: true, allowed_clients: [a], "
               "min_version: '1.1', ciphers: ''}\n"
               "    allow: [10.0.0.0/33, 'lab.local', 10.1.0.0/16, '::1/129', '10.0.0.0/']\n",
               "t.yaml:7:85: min_version: expected one of 1.2 or 1.3, got '1.1'\n"
               "t.yaml:7:101: ciphers: expected an OpenSSL cipher list like \"ECDHE+AESGCM\", "
               "got ''\n"
               "t.yaml:7:5: missing 'cert' in tls of channel 'lab' (the server certificate, PEM)\n"
               "t.yaml:7:23: require_client_cert needs 'ca' in tls of channel 'lab': the CA that "
               "client certificates must chain to\n"
               "t.yaml:7:50: allowed_clients needs 'ca' in tls of channel 'lab': the CA that "
               "client certificates must chain to\n"
               "t.yaml:8:13: allow: '10.0.0.0/33': the prefix length must be from 0 to 32\n"
               "t.yaml:8:26: allow: 'lab.local': not a numeric IP address (names are not "
               "allowed here)\n"
               "t.yaml:8:52: allow: '::1/129': the prefix length must be from 0 to 128\n"
               "t.yaml:8:63: allow: '10.0.0.0/': the prefix length is missing after '/'\n");
  CHECK_ERRORS(EHR
               "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: ehr\n"
               "    tls:\n    allow: {a: b}\n",
               "t.yaml:7:5: missing 'cert' in tls of channel 'lab' (the server certificate, PEM)\n"
               "t.yaml:7:5: missing 'key' in tls of channel 'lab' (the server certificate's key, "
               "PEM)\n"
               "t.yaml:8:12: allow: expected an address range like 10.0.0.0/8 or a list of "
               "them, got a mapping\n");
  CHECK_ERRORS(EHR
               "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: ehr\n"
               "    tls: {cert: a, key: b, ca: c, allowed_clients: []}\n",
               "t.yaml:7:52: allowed_clients: expected 1 to 256 names\n");
}

TEST(mixed_file_and_mllp_destinations) {
  const char *y =
      "destinations:\n"
      "  files: {type: file, dir: var/out}\n"
      "  ehr: {type: mllp, host: 127.0.0.1, port: 2575, on_ae: dead_letter}\n"
      "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: [files, ehr]\n";
  cad_config_t *c = load(y);
  REQUIRE(c);
  REQUIRE(c->ndests == 2);
  CHECK_INT(c->dests[0].type, CAD_DEST_FILE);
  CHECK(c->dests[0].mllp.sender.host == NULL);
  CHECK_INT(c->dests[1].type, CAD_DEST_MLLP);
  CHECK(c->dests[1].mllp.sender.ae_dead_letter);
  CHECK_INT(c->channels[0].nto, 2);
  cad_config_free(c);
  /* a file destination does not take MLLP keys */
  CHECK_ERRORS(
      "destinations:\n  ehr: {type: file, dir: x, host: h}\n" LAB,
      "t.yaml:2:29: unknown key 'host' in destination 'ehr' (expected one of: type, "
      "dir, append, name, mode, dir_mode, batch, format, retry, on_failure, max_backlog, lanes, order_by, encoding, unrepresentable)\n");
}

/* Every TLS file a configuration names must be a readable regular file when
 * it is loaded (`check` finds what `run` would fail on), with the position
 * of the key; a FIFO is refused at once instead of blocking. */
TEST(tls_files_must_exist) {
  tls_files_here();
  if (mkfifo("fifo.crt", 0600) != 0) abort();
  if (mkdir("dir.crt", 0700) != 0) abort();
  CHECK_ERRORS(EHR
               "channels:\n  lab:\n    listen: 127.0.0.1:2575\n    to: ehr\n"
               "    tls: {cert: missing.crt, key: fifo.crt, ca: dir.crt}\n",
               "t.yaml:7:17: cert: cannot read 'missing.crt': No such file or directory\n"
               "t.yaml:7:35: key: cannot read 'fifo.crt': a FIFO, not a regular file\n"
               "t.yaml:7:49: ca: cannot read 'dir.crt': a directory, not a regular file\n");
  CHECK_ERRORS("destinations:\n  ehr: {type: mllp, host: h, port: 1, tls: {ca: nope.crt}}\n" LAB,
               "t.yaml:2:49: ca: cannot read 'nope.crt': No such file or directory\n");
}

/* One rule for booleans (YAML 1.2 core): true/false in any of its three
 * spellings; yes/no/on/off are refused like any other word. */
TEST(booleans_yaml_1_2) {
  static const char *const good[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
  static const char *const bad[] = {"yes", "no", "on", "off", "y", "1", "tRUE"};
  char y[256];
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(y, sizeof y,
             "destinations:\n  ehr: {type: mllp, host: h, port: 1, persistent: %s}\n" LAB, good[i]);
    cad_config_t *c = load(y);
    REQUIRE(c);
    CHECK_INT(!c->dests[0].mllp.sender.per_message, good[i][0] == 't' || good[i][0] == 'T');
    cad_config_free(c);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(y, sizeof y,
             "destinations:\n  ehr: {type: mllp, host: h, port: 1, persistent: %s}\n" LAB, bad[i]);
    char want[200];
    snprintf(want, sizeof want, "t.yaml:2:51: persistent: expected true or false, got '%s'\n",
             bad[i]);
    CHECK_ERRORS(y, want);
  }
}

TEST_MAIN()
