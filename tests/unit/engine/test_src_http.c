/* test_src_http.c - the listen_http source's answer to an ACK
 * (engine/runtime/src_http.h): the status table of docs/http.md, and the
 * configuration of listen_http and type: http as the loader fills it. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "harness.h"
#include "src_http.h"

static int status_of(const char *ack) { return cad__src_http_status(ack, strlen(ack)); }

TEST(ack_to_status) {
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK^A01^ACK|X|P|2.5\rMSA|AA|C1\r"), 200);
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\rMSA|CA|C1\r"), 200);
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\rMSA|AR|C1\rERR|||102\r"), 422);
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\rMSA|CR|C1\r"), 422);
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\rMSA|AE|C1\rERR|||207\r"), 503);
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\rMSA|CE|C1\r"), 503);
  CHECK_INT(status_of("MSH$^~\\&$A$B$C$D$1$$ACK$X$P$2.5\rMSA$AA$C1\r"), 200); /* own delimiters */
  CHECK_INT(status_of(""), 500);
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\r"), 500); /* no MSA */
  CHECK_INT(status_of("MSH|^~\\&|A|B|C|D|1||ACK|X|P|2.5\rXMSA|AA\r"), 500);
}

TEST(config_of_both) {
  const char *y =
      "engine: {data_dir: d}\n"
      "destinations:\n"
      "  api:\n"
      "    type: http\n"
      "    url: \"http://127.0.0.1:9/p/${PID-3.1}\"\n"
      "    method: PUT\n"
      "    retry_on: [\"409\", \"5xx\"]\n"
      "channels:\n"
      "  lab:\n"
      "    listen_http: {listen: \"127.0.0.1:8080\", allow: [10.0.0.0/8]}\n"
      "    to: [api]\n";
  cad_config_t *c = NULL;
  char *err = NULL;
  int rc = cad_config_load_mem("t.yaml", y, strlen(y), CAD_CONFIG_NO_INCLUDE, &c, &err);
  if (rc) fprintf(stderr, "%s", err ? err : "");
  REQUIRE(rc == 0);
  const cad_conf_dest_t *d = &c->dests[0];
  CHECK_INT(d->type, CAD_DEST_HTTP);
  CHECK_STR(d->http.url, "http://127.0.0.1:9/p/${PID-3.1}");
  CHECK_INT(d->http.method, CAD_HTTP_PUT);
  CHECK_INT(d->http.timeout_ms, 30000);
  CHECK_INT(d->http.connect_timeout_ms, 10000);
  CHECK_INT(d->http.keep_body, 4096);
  REQUIRE(d->http.nretry_on == 2);
  CHECK_STR(d->http.retry_on[0], "409");
  const cad_conf_channel_t *ch = &c->channels[0];
  CHECK(ch->http.enabled);
  CHECK_INT(ch->nlisten, 0);
  CHECK_STR(ch->http.listen, "127.0.0.1:8080");
  CHECK_STR(ch->http.path, "/hl7");
  CHECK_INT(ch->http.max_body, 4 << 20);
  REQUIRE(ch->http.nallow == 1);
  cad_config_free(c);
  free(err);
}

TEST_MAIN()
