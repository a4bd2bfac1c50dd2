/* test_kind_conf.c - the key tables the channel kinds declare (cad_conf.h)
 * are well formed: engine/config applies them blindly, so a mistake in a new
 * kind's table (a name twice, a required key with a default, an enum whose
 * default is not one of its names, a section without its table) is caught
 * here rather than at a user's configuration. */
#include <stddef.h>
#include <string.h>

#include "cad_conf.h"
#include "dir_conf.h"
#include "file_conf.h"
#include "harness.h"
#include "http_conf.h"
#include "mllp_conf.h"
#include "sftp_conf.h"
#include "tls_conf.h"

static void check_section(const cad_conf_section_t *sec, int depth) {
  REQUIRE(depth < 4);
  REQUIRE(sec->what && sec->keys && sec->nkeys > 0 && sec->nkeys <= 32);
  for (size_t i = 0; i < sec->nkeys; i++) {
    const cad_conf_key_t *k = &sec->keys[i];
    CHECK(k->name && *k->name && k->doc && *k->doc);
    for (size_t j = 0; j < i; j++) CHECK(strcmp(sec->keys[j].name, k->name) != 0);
    if (k->flags & CAD_CONF_REQUIRED) CHECK(k->def == NULL);
    CHECK(k->type != CAD_CONF_CUSTOM); /* only engine/config has setters of its own */
    if (k->type == CAD_CONF_ENUM) {
      const cad_conf_enum_t *e = k->arg;
      REQUIRE(e && e->names && e->names[0] && e->doc);
      bool found = k->def == NULL;
      for (size_t n = 0; e->names[n] && k->def; n++) found |= strcmp(e->names[n], k->def) == 0;
      CHECK(found);
    }
    if (k->type == CAD_CONF_NAMES) CHECK(k->arg != NULL && k->lo <= k->hi);
    if (k->type == CAD_CONF_DURATION || k->type == CAD_CONF_SIZE || k->type == CAD_CONF_INT)
      CHECK(k->lo <= k->hi);
    if (k->type == CAD_CONF_SECTION) {
      REQUIRE(k->arg != NULL);
      check_section(k->arg, depth + 1);
    }
  }
}

TEST(file_destination_table) { check_section(&cad_file_dest_conf, 0); }
TEST(mllp_destination_table) { check_section(&cad_mllp_dest_conf, 0); }
TEST(tls_listener_table) { check_section(&cad_tls_server_conf, 0); }
TEST(dir_source_table) { check_section(&cad_dir_source_conf, 0); }
TEST(sftp_source_table) { check_section(&cad_sftp_source_conf, 0); }
TEST(sftp_destination_table) { check_section(&cad_sftp_dest_conf, 0); }
TEST(http_destination_table) { check_section(&cad_http_dest_conf, 0); }
TEST(http_source_table) { check_section(&cad_http_listen_conf, 0); }

/* An inbound channel's listener keys write the listener's own options, each
 * to the field the listener reads (the engine hands the struct over as is). */
TEST(mllp_listener_table) {
  const cad_conf_section_t *sec = &cad_mllp_listen_conf;
  check_section(sec, 0);
  static const struct {
    const char *name;
    size_t off;
    const char *def;
  } want[] = {
      {"max_message_size", offsetof(cad_mllp_listener_opts_t, max_frame), "4MiB"},
      {"idle_timeout", offsetof(cad_mllp_listener_opts_t, idle_timeout_ms), "300s"},
      {"frame_timeout", offsetof(cad_mllp_listener_opts_t, frame_timeout_ms), "30s"},
      {"max_connections", offsetof(cad_mllp_listener_opts_t, max_connections), "0"},
  };
  REQUIRE(sec->nkeys == sizeof want / sizeof want[0]);
  for (size_t i = 0; i < sec->nkeys; i++) {
    CHECK_STR(sec->keys[i].name, want[i].name);
    CHECK_INT(sec->keys[i].off, want[i].off);
    CHECK_STR(sec->keys[i].def, want[i].def);
  }
  CHECK(sec->keys[3].flags & CAD_CONF_ZERO_AUTO); /* 0: resolved at load */
}

TEST(seen_and_key_node) {
  bool seen[32] = {false};
  seen[1] = true; /* append */
  CHECK(cad_conf_seen(&cad_file_dest_conf, seen, "append"));
  CHECK(!cad_conf_seen(&cad_file_dest_conf, seen, "dir"));
  CHECK(!cad_conf_seen(&cad_file_dest_conf, seen, "no-such-key"));
  CHECK(cad_conf_key_node(NULL, "x") == NULL);
}

TEST_MAIN()
