/* cli_token.c - `caduceus token new NAME --role ROLE`: an admin API token.
 *
 * Prints the token once (it is not stored anywhere) and the line to paste
 * under `admin: tokens:`, which holds only its SHA-256.
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "cli.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus token new NAME --role viewer|analyst|operator|admin\n"
          "\n"
          "Make a random admin API token.  It is printed once; the configuration keeps\n"
          "only its hash (paste the printed line under admin: tokens:).  Send it as\n"
          "'Authorization: Bearer TOKEN'.\n");
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '-' || *s == '_' || *s == '.'))
      return false;
  return true;
}

int cad_cli_token(int argc, char **argv) {
  static const char *const roles[] = {"viewer", "analyst", "operator", "admin"};
  const char *name = NULL, *role = NULL;
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return 0;
  }
  if (argc < 2 || strcmp(argv[1], "new") != 0) {
    usage(stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) role = argv[++i];
    else if (argv[i][0] != '-' && !name) name = argv[i];
    else {
      fprintf(stderr, "caduceus token: unexpected '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  bool role_ok = false;
  for (size_t i = 0; role && i < sizeof roles / sizeof roles[0]; i++)
    role_ok = role_ok || strcmp(role, roles[i]) == 0;
  if (!name || !valid_name(name) || !role_ok) {
    fprintf(stderr, "caduceus token: %s\n",
            !name || !valid_name(name) ? "NAME must be 1 to 64 letters, digits, '-', '_' or '.'"
                                       : "--role must be viewer, analyst, operator or admin");
    return 2;
  }
  char tok[CAD_ADMIN_TOKEN_LEN + 1], hash[CAD_ADMIN_HASH_LEN + 1];
  if (cad_admin_token_new(tok, hash) < 0) {
    fprintf(stderr, "caduceus token: no random bytes\n");
    return 1;
  }
  printf("token: %s\n", tok);
  printf("# under admin: tokens: in the configuration (the token itself is not kept):\n");
  printf("- { name: %s, role: %s, hash: \"%s\" }\n", name, role, hash);
  return 0;
}
