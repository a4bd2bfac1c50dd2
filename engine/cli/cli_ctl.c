/* cli_ctl.c - `caduceus ctl`: operate a running engine through its admin
 * API (engine/runtime/admin.h) with libcurl.
 *
 * The token comes from the environment (CADUCEUS_TOKEN), never from the
 * command line (where `ps` would show it); the address from --url or
 * CADUCEUS_URL (default http://127.0.0.1:8765).  The answer's JSON is
 * printed as it came; the exit status says how it went: 0 (2xx), 1 (the
 * engine refused or failed: its JSON error is on stdout; or it could not be
 * reached), 2 (usage).
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_ANSWER ((size_t)64 << 20)
#define DEFAULT_URL "http://127.0.0.1:8765"

typedef struct answer {
  char *p;
  size_t len;
  bool too_big;
} answer_t;

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
  answer_t *a = ud;
  size_t k = size * n;
  if (a->len + k > MAX_ANSWER) {
    a->too_big = true;
    return 0;
  }
  char *np = realloc(a->p, a->len + k + 1);
  if (!np) return 0;
  memcpy(np + a->len, p, k);
  a->p = np;
  a->len += k;
  a->p[a->len] = 0;
  return k;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: caduceus ctl [--url URL] [--cacert FILE] COMMAND [ARGS]\n"
          "\n"
          "Operate a running engine through its admin API.  The token is read from\n"
          "CADUCEUS_TOKEN; the address from --url, else CADUCEUS_URL, else\n" DEFAULT_URL
          ".\n"
          "\n"
          "  channels | destinations          state and counters\n"
          "  pause channel|destination NAME   stop a channel's intake / a destination's delivery\n"
          "  resume channel|destination NAME  go on\n"
          "  queue DEST                       depth, oldest waiting, dead letters\n"
          "  deadletters DEST [--limit N]     list the dead letters (no message contents)\n"
          "  requeue DEST NUMBER|--all        dead letters back to the destination's queue\n"
          "  purge DEST NUMBER|--all          drop dead letters (role admin)\n"
          "  search [KEY=VALUE ...]           archive search: patient, control_id, type,\n"
          "                                   channel, destination, status, sender, receiver,\n"
          "                                   since, until, limit\n"
          "  show ID [--body]                 one archived message (--body: role analyst)\n"
          "  resend ID DEST [--set PATH=TEXT]...\n"
          "                                   an archived message to DEST, as a new message\n"
          "                                   (with those elements set first)\n"
          "  reload                           re-read the configuration (errors are answered)\n"
          "  audit [--limit N]                the audit trail, newest first (role admin)\n"
          "\n"
          "Prints the engine's JSON answer.  Exit status: 0 done, 1 refused or failed,\n"
          "2 usage.\n");
}

/* Append s to buf (cap bytes), URL-escaped when esc. */
static bool put(char *buf, size_t cap, CURL *c, const char *s, bool esc) {
  char *e = esc ? curl_easy_escape(c, s, 0) : NULL;
  if (esc && !e) return false;
  size_t have = strlen(buf), add = strlen(e ? e : s);
  bool ok = have + add < cap;
  if (ok) memcpy(buf + have, e ? e : s, add + 1);
  curl_free(e);
  return ok;
}

/* The request of a command: method, path (with query) and body.  0, or 2
 * for a usage error (said). */
static int build(CURL *c, int argc, char **argv, const char **method, char *path, size_t cap,
                 char *body, size_t bcap) {
  const char *cmd = argv[0];
  *method = "GET";
  path[0] = body[0] = 0;
  bool ok = true;
  if (!strcmp(cmd, "channels") || !strcmp(cmd, "destinations") || !strcmp(cmd, "reload")) {
    if (argc != 1) return 2;
    if (!strcmp(cmd, "reload")) *method = "POST";
    snprintf(path, cap, "/api/v1/%s", cmd);
  } else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
    if (argc != 3 || (strcmp(argv[1], "channel") && strcmp(argv[1], "destination"))) return 2;
    *method = "POST";
    snprintf(path, cap, "/api/v1/%ss/", argv[1]);
    ok = put(path, cap, c, argv[2], true) && put(path, cap, c, "/", false) &&
         put(path, cap, c, cmd, false);
  } else if (!strcmp(cmd, "queue") || !strcmp(cmd, "deadletters")) {
    bool dl = !strcmp(cmd, "deadletters");
    if (argc != 2 && !(dl && argc == 4 && !strcmp(argv[2], "--limit"))) return 2;
    snprintf(path, cap, "/api/v1/destinations/");
    ok = put(path, cap, c, argv[1], true) &&
         put(path, cap, c, dl ? "/deadletters" : "/queue", false);
    if (ok && argc == 4)
      ok = put(path, cap, c, "?limit=", false) && put(path, cap, c, argv[3], true);
  } else if (!strcmp(cmd, "requeue") || !strcmp(cmd, "purge")) {
    if (argc != 3) return 2;
    *method = "POST";
    snprintf(path, cap, "/api/v1/destinations/");
    ok = put(path, cap, c, argv[1], true) && put(path, cap, c, "/deadletters/", false) &&
         put(path, cap, c, cmd, false);
    if (!strcmp(argv[2], "--all")) {
      snprintf(body, bcap, "{\"all\":true}");
    } else {
      char *end;
      unsigned long long n = strtoull(argv[2], &end, 10);
      if (!*argv[2] || *end || n == 0) return 2;
      snprintf(body, bcap, "{\"number\":%llu}", n);
    }
  } else if (!strcmp(cmd, "search")) {
    snprintf(path, cap, "/api/v1/messages");
    for (int i = 1; i < argc && ok; i++) {
      const char *eq = strchr(argv[i], '=');
      if (!eq || eq == argv[i] || eq - argv[i] > 32) return 2;
      char key[40];
      snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i]), argv[i]);
      ok = put(path, cap, c, i == 1 ? "?" : "&", false) && put(path, cap, c, key, true) &&
           put(path, cap, c, "=", false) && put(path, cap, c, eq + 1, true);
    }
  } else if (!strcmp(cmd, "show")) {
    if (argc != 2 && !(argc == 3 && !strcmp(argv[2], "--body"))) return 2;
    snprintf(path, cap, "/api/v1/messages/");
    ok = put(path, cap, c, argv[1], true) && (argc == 2 || put(path, cap, c, "?body=1", false));
  } else if (!strcmp(cmd, "resend")) {
    /* resend ID DEST [--set PATH=TEXT]... : the body through jansson */
    if (argc < 3 || (argc - 3) % 2) return 2;
    *method = "POST";
    snprintf(path, cap, "/api/v1/messages/");
    ok = put(path, cap, c, argv[1], true) && put(path, cap, c, "/resend", false);
    json_t *doc = json_pack("{s:s}", "destination", argv[2]), *set = json_object();
    for (int i = 3; doc && set && i < argc; i += 2) {
      const char *eq = strchr(argv[i + 1], '=');
      if (strcmp(argv[i], "--set") || !eq || eq == argv[i + 1]) {
        json_decref(doc);
        json_decref(set);
        return 2;
      }
      char key[64];
      snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i + 1]), argv[i + 1]);
      json_object_set_new(set, key, json_string(eq + 1));
    }
    if (set && json_object_size(set)) json_object_set(doc, "set", set);
    json_decref(set);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text || strlen(text) >= bcap) ok = false;
    else memcpy(body, text, strlen(text) + 1);
    free(text);
  } else if (!strcmp(cmd, "audit")) {
    if (argc != 1 && !(argc == 3 && !strcmp(argv[1], "--limit"))) return 2;
    snprintf(path, cap, "/api/v1/audit");
    if (argc == 3) ok = put(path, cap, c, "?limit=", false) && put(path, cap, c, argv[2], true);
  } else {
    return 2;
  }
  if (!ok) {
    fprintf(stderr, "caduceus ctl: an argument is too long\n");
    return 2;
  }
  return 0;
}

int cad_cli_ctl(int argc, char **argv) {
  const char *url = getenv("CADUCEUS_URL"), *cacert = NULL;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--url") && i + 1 < argc) url = argv[++i];
    else if (!strcmp(argv[i], "--cacert") && i + 1 < argc) cacert = argv[++i];
    else {
      usage(stderr);
      return 2;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  const char *tok = getenv("CADUCEUS_TOKEN");
  if (!tok || !*tok) {
    fprintf(stderr,
            "caduceus ctl: set CADUCEUS_TOKEN to an admin API token "
            "(caduceus token new NAME --role ROLE)\n");
    return 2;
  }
  if (!url || !*url) url = DEFAULT_URL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  CURL *c = curl_easy_init();
  if (!c) {
    curl_global_cleanup();
    return 1;
  }
  char path[4096], body[16384], full[8192];
  const char *method;
  int rc = build(c, argc - i, argv + i, &method, path, sizeof path, body, sizeof body);
  if (rc) {
    if (rc == 2) usage(stderr);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return rc;
  }
  size_t ul = strlen(url);
  while (ul && url[ul - 1] == '/') ul--;
  snprintf(full, sizeof full, "%.*s%s", (int)ul, url, path);
  char auth[1200];
  int al = snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
  struct curl_slist *h = NULL;
  if (al > 0 && (size_t)al < sizeof auth) h = curl_slist_append(h, auth);
  if (body[0]) h = curl_slist_append(h, "Content-Type: application/json");
  answer_t a = {0};
  curl_easy_setopt(c, CURLOPT_URL, full);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (cacert) curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
  if (!strcmp(method, "POST")) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  CURLcode cr = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (cr != CURLE_OK) {
    fprintf(stderr, "caduceus ctl: %s: %s\n", url,
            a.too_big ? "the answer is too large" : curl_easy_strerror(cr));
    rc = 1;
  } else {
    if (a.p) fputs(a.p, stdout);
    if (a.len && a.p[a.len - 1] != '\n') fputc('\n', stdout);
    rc = status >= 200 && status < 300 ? 0 : 1;
  }
  free(a.p);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return rc;
}
