/* replay_main.c - runs a fuzz target over files without libFuzzer.
 *
 * Arguments are files or directories (read one level deep, plus the
 * subdirectories malformed/, streams/ and mllp/ of the HL7 corpus).  A missing
 * directory is skipped with a note, so the replay works in a clone without the
 * shared corpus.  Used by `meson test --suite fuzz` and to replay a finding:
 *   build/tests/fuzz/replay_hl7 crash-1234
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t cap = 1 << 16, n = 0, r;
  uint8_t *buf = malloc(cap);
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      uint8_t *nb = realloc(buf, cap *= 2);
      if (!nb) break;
      buf = nb;
    }
  }
  fclose(f);
  if (!buf) return 0;
  /* An exact-size heap copy, so ASan catches any read past the end. */
  uint8_t *exact = malloc(n ? n : 1);
  if (exact) {
    memcpy(exact, buf, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
  }
  free(buf);
  return 1;
}

static int run_path(const char *path, int depth) {
  struct stat st;
  if (stat(path, &st) != 0) {
    printf("skip: %s does not exist\n", path);
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path);
  DIR *d = opendir(path);
  if (!d) return 0;
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    struct stat s2;
    if (stat(sub, &s2) != 0) continue;
    if (S_ISDIR(s2.st_mode)) {
      if (depth == 0) count += run_path(sub, depth + 1);
    } else {
      count += run_file(sub);
    }
  }
  closedir(d);
  return count;
}

int main(int argc, char **argv) {
  int total = 0;
  for (int i = 1; i < argc; i++) total += run_path(argv[i], 0);
  printf("replayed %d inputs\n", total);
  if (total == 0) return 77; /* nothing to replay: meson records a skip, not a pass */
  printf("%d passed, 0 failed\n", total);
  return 0;
}
