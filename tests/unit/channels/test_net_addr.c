/* test_net_addr.c - host:port and address ranges, with their reasons. */
#include "net_addr.h"

#include <string.h>
#include <sys/socket.h>

#include "harness.h"

TEST(hostport) {
  char host[64];
  int fam, port;
  CHECK(cad_hostport_parse("127.0.0.1:2575", true, host, sizeof host, &fam, &port) == NULL);
  CHECK_STR(host, "127.0.0.1");
  CHECK_INT(fam, AF_INET);
  CHECK_INT(port, 2575);
  CHECK(cad_hostport_parse("[::1]:1", true, host, sizeof host, &fam, &port) == NULL);
  CHECK_STR(host, "::1");
  CHECK_INT(fam, AF_INET6);
  /* canonical form */
  CHECK(cad_hostport_parse("[0:0::1]:7", true, host, sizeof host, &fam, &port) == NULL);
  CHECK_STR(host, "::1");
  /* names only where allowed */
  CHECK(cad_hostport_parse("ehr.example:2575", false, host, sizeof host, &fam, &port) == NULL);
  CHECK_STR(host, "ehr.example");
  CHECK_INT(fam, AF_UNSPEC);
  const char *why = cad_hostport_parse("ehr.example:2575", true, host, sizeof host, &fam, &port);
  CHECK(why && strstr(why, "numeric"));
  static const char *bad[] = {"127.0.0.1", "::1:2575",  "[::1]2575",     "[::1:2575",  ":2575",
                              "1.2.3.4:",  "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:x1", "[zz]:1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK(cad_hostport_parse(bad[i], false, host, sizeof host, &fam, &port) != NULL);
  char small[4];
  CHECK(cad_hostport_parse("10.0.0.1:1", true, small, sizeof small, &fam, &port) != NULL);
}

TEST(cidr) {
  cad_cidr_t c;
  CHECK(cad_cidr_parse_why("10.0.0.0/8", &c) == NULL);
  CHECK_INT(c.family, AF_INET);
  CHECK_INT(c.prefix, 8);
  CHECK(cad_cidr_parse_why("127.0.0.1", &c) == NULL);
  CHECK_INT(c.prefix, 32);
  CHECK(cad_cidr_parse_why("fd00::/8", &c) == NULL);
  CHECK_INT(c.family, AF_INET6);
  CHECK_INT(c.prefix, 8);
  CHECK(strstr(cad_cidr_parse_why("10.0.0.0/33", &c), "0 to 32"));
  CHECK(strstr(cad_cidr_parse_why("::/129", &c), "0 to 128"));
  CHECK(strstr(cad_cidr_parse_why("10.0.0.0/", &c), "missing"));
  CHECK(strstr(cad_cidr_parse_why("host.example", &c), "numeric"));
  CHECK(cad_cidr_parse_why("", &c) != NULL);
}

TEST_MAIN()
