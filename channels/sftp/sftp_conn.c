/* sftp_conn.c - one SFTP connection (sftp_conn.h). */
#include "sftp_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cad_error.h"
#include "cad_io.h"
#include "file_dest.h"

#define COPY_BUF (64 * 1024)
#define MAX_SUFFIX 999

struct cad_sftp {
  ssh_session ssh;
  sftp_session sftp;
  bool can_fsync;
  char *buf;
};

void cad_sftp_close(cad_sftp_t *c) {
  if (!c) return;
  if (c->sftp) sftp_free(c->sftp);
  if (c->ssh) {
    ssh_disconnect(c->ssh);
    ssh_free(c->ssh);
  }
  free(c->buf);
  free(c);
}

/* The server key's SHA256 fingerprint, for messages. */
static void fingerprint(ssh_session s, char *out, size_t cap) {
  ssh_key key = NULL;
  unsigned char *hash = NULL;
  size_t hlen = 0;
  snprintf(out, cap, "unknown");
  if (ssh_get_server_publickey(s, &key) != SSH_OK) return;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
    char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    if (fp) {
      snprintf(out, cap, "%s", fp);
      ssh_string_free_char(fp);
    }
    ssh_clean_pubkey_hash(&hash);
  }
  ssh_key_free(key);
}

static int check_host(cad_sftp_t *c, const cad_sftp_opts_t *o, char *err, size_t cap) {
  char fp[128];
  enum ssh_known_hosts_e k = ssh_session_is_known_server(c->ssh);
  if (k == SSH_KNOWN_HOSTS_OK) return 0;
  fingerprint(c->ssh, fp, sizeof fp);
  switch (k) {
    case SSH_KNOWN_HOSTS_CHANGED:
      snprintf(err, cap,
               "host key mismatch: the key of %s port %d (%s) is not the one recorded in %s; "
               "refusing to connect (if the server's key really changed, check the new "
               "fingerprint with its administrator and update known_hosts)",
               o->host, o->port, fp, o->known_hosts);
      break;
    case SSH_KNOWN_HOSTS_OTHER:
      snprintf(err, cap,
               "host key mismatch: %s port %d offers a key of another type (%s) than the one "
               "recorded in %s; refusing to connect",
               o->host, o->port, fp, o->known_hosts);
      break;
    default:
      snprintf(err, cap,
               "%s port %d is not in %s (its key: %s); refusing to connect: add it after "
               "checking that fingerprint (ssh-keyscan -p %d %s >> %s)",
               o->host, o->port, o->known_hosts, fp, o->port, o->host, o->known_hosts);
      break;
  }
  return -EACCES;
}

static int authenticate(cad_sftp_t *c, const cad_sftp_opts_t *o, char *err, size_t cap) {
  int rc;
  if (o->key) {
    const char *pass = o->passphrase_env ? getenv(o->passphrase_env) : NULL;
    ssh_key k = NULL;
    if (ssh_pki_import_privkey_file(o->key, pass, NULL, NULL, &k) != SSH_OK) {
      snprintf(err, cap, "cannot read the private key %s%s", o->key,
               o->passphrase_env && !pass ? " (its passphrase variable is not set)" : "");
      return -EACCES;
    }
    rc = ssh_userauth_publickey(c->ssh, NULL, k);
    ssh_key_free(k);
  } else {
    const char *pw = o->password_env ? getenv(o->password_env) : NULL;
    if (!pw) {
      snprintf(err, cap, "the password variable %s is not set",
               o->password_env ? o->password_env : "(none)");
      return -EACCES;
    }
    rc = ssh_userauth_password(c->ssh, NULL, pw);
  }
  if (rc != SSH_AUTH_SUCCESS) {
    snprintf(err, cap, "authentication as %s refused by %s port %d", o->user, o->host, o->port);
    return -EACCES;
  }
  return 0;
}

int cad_sftp_connect(const cad_sftp_opts_t *o, cad_sftp_t **out, char *err, size_t cap) {
  *out = NULL;
  cad_sftp_t *c = calloc(1, sizeof *c);
  if (!c || !(c->buf = malloc(COPY_BUF)) || !(c->ssh = ssh_new())) {
    cad_sftp_close(c);
    snprintf(err, cap, "out of memory");
    return CAD_E_NOMEM;
  }
  int port = o->port ? o->port : 22;
  long secs = (long)((o->timeout_ms ? o->timeout_ms : 30000) + 999) / 1000;
  bool no = false;
  ssh_options_set(c->ssh, SSH_OPTIONS_PROCESS_CONFIG, &no);
  ssh_options_set(c->ssh, SSH_OPTIONS_HOST, o->host);
  ssh_options_set(c->ssh, SSH_OPTIONS_PORT, &port);
  ssh_options_set(c->ssh, SSH_OPTIONS_USER, o->user);
  ssh_options_set(c->ssh, SSH_OPTIONS_TIMEOUT, &secs);
  ssh_options_set(c->ssh, SSH_OPTIONS_KNOWNHOSTS, o->known_hosts);
  ssh_options_set(c->ssh, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
  int rc = 0;
  if (ssh_connect(c->ssh) != SSH_OK) {
    snprintf(err, cap, "cannot connect to %s port %d: %s", o->host, port, ssh_get_error(c->ssh));
    rc = CAD_E_IO;
  }
  cad_sftp_opts_t oo = *o;
  oo.port = port;
  if (rc == 0) rc = check_host(c, &oo, err, cap);
  if (rc == 0) rc = authenticate(c, &oo, err, cap);
  if (rc == 0) {
    c->sftp = sftp_new(c->ssh);
    if (!c->sftp || sftp_init(c->sftp) != SSH_OK) {
      snprintf(err, cap, "%s port %d: cannot start SFTP: %s", o->host, port, ssh_get_error(c->ssh));
      rc = CAD_E_IO;
    }
  }
  if (rc < 0) {
    cad_sftp_close(c);
    return rc;
  }
  c->can_fsync = sftp_extension_supported(c->sftp, "fsync@openssh.com", "1") == 1;
  *out = c;
  return 0;
}

static int sftp_err(cad_sftp_t *c, const char *what, const char *path, char *err, size_t cap) {
  int e = c->sftp ? sftp_get_error(c->sftp) : -1;
  static const char *const names[] = {
      "ok",          "end of file",   "no such file",    "permission denied", "failure",
      "bad message", "no connection", "connection lost", "unsupported"};
  const char *why =
      e >= 0 && e < (int)(sizeof names / sizeof names[0]) ? names[e] : ssh_get_error(c->ssh);
  snprintf(err, cap, "%s %s: %s", what, path, why);
  return e == SSH_FX_NO_SUCH_FILE ? -ENOENT : e == SSH_FX_PERMISSION_DENIED ? -EACCES : CAD_E_IO;
}

int cad_sftp_list(cad_sftp_t *c, const char *dir, int (*cb)(void *ud, const cad_sftp_entry_t *e),
                  void *ud, char *err, size_t cap) {
  sftp_dir d = sftp_opendir(c->sftp, dir);
  if (!d) return sftp_err(c, "cannot list", dir, err, cap);
  sftp_attributes a;
  int rc = 0;
  while ((a = sftp_readdir(c->sftp, d))) {
    if (a->name && strcmp(a->name, ".") && strcmp(a->name, "..") && rc == 0) {
      cad_sftp_entry_t e = {a->name, a->size, a->mtime, a->type == SSH_FILEXFER_TYPE_REGULAR};
      if (cb(ud, &e)) rc = 1;
    }
    sftp_attributes_free(a);
  }
  if (!sftp_dir_eof(d) && rc == 0) rc = sftp_err(c, "cannot list", dir, err, cap);
  sftp_closedir(d);
  return rc < 0 ? rc : 0;
}

int cad_sftp_download(cad_sftp_t *c, const char *path, int fd, uint64_t *bytes, char *err,
                      size_t cap) {
  *bytes = 0;
  sftp_file f = sftp_open(c->sftp, path, O_RDONLY, 0);
  if (!f) return sftp_err(c, "cannot open", path, err, cap);
  int rc = 0;
  for (;;) {
    ssize_t n = sftp_read(f, c->buf, COPY_BUF);
    if (n < 0) {
      rc = sftp_err(c, "cannot read", path, err, cap);
      break;
    }
    if (n == 0) break;
    rc = cad_io_pwrite_all(cad_io_default(), fd, c->buf, (size_t)n, (off_t)*bytes);
    if (rc < 0) {
      snprintf(err, cap, "cannot write the local copy of %s: %s", path, cad_strerror(rc));
      break;
    }
    *bytes += (uint64_t)n;
  }
  sftp_close(f);
  return rc;
}

int cad_sftp_put(cad_sftp_t *c, const char *dir, const char *name, uint32_t mode,
                 long (*read)(void *ud, char *buf, size_t cap), void *ud, char *final, size_t fcap,
                 char *err, size_t cap) {
  unsigned char r[6];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) memset(r, 0x5a, sizeof r);
  char tmp[1024], path[1024];
  snprintf(tmp, sizeof tmp, "%s/.%s.%02x%02x%02x%02x%02x%02x.part", dir, name, r[0], r[1], r[2],
           r[3], r[4], r[5]);
  sftp_file f = sftp_open(c->sftp, tmp, O_WRONLY | O_CREAT | O_EXCL, mode ? mode : 0600);
  if (!f) return sftp_err(c, "cannot create", tmp, err, cap);
  int rc = 0;
  for (;;) {
    long n = read(ud, c->buf, COPY_BUF);
    if (n < 0) {
      rc = (int)n;
      snprintf(err, cap, "cannot read what is to be written: %s", cad_strerror(rc));
      break;
    }
    if (n == 0) break;
    if (sftp_write(f, c->buf, (size_t)n) != n) {
      rc = sftp_err(c, "cannot write", tmp, err, cap);
      break;
    }
  }
  if (rc == 0 && c->can_fsync && sftp_fsync(f) != 0) rc = sftp_err(c, "cannot sync", tmp, err, cap);
  if (sftp_close(f) != 0 && rc == 0) rc = sftp_err(c, "cannot close", tmp, err, cap);
  for (unsigned k = 1; rc == 0 && k <= MAX_SUFFIX; k++) {
    char cand[512];
    cad_file_name_suffixed(name, k, cand, sizeof cand);
    snprintf(path, sizeof path, "%s/%s", dir, cand);
    if (sftp_rename(c->sftp, tmp, path) == 0) {
      snprintf(final, fcap, "%s", cand);
      return 0;
    }
    sftp_attributes a = sftp_lstat(c->sftp, path);
    if (!a) {
      rc = sftp_err(c, "cannot rename to", path, err, cap);
      break;
    }
    sftp_attributes_free(a); /* taken: the next suffix */
    if (k == MAX_SUFFIX) {
      snprintf(err, cap, "every name from %s to ~%u is taken in %s", name, MAX_SUFFIX, dir);
      rc = -EEXIST;
    }
  }
  sftp_unlink(c->sftp, tmp);
  return rc;
}

int cad_sftp_remove(cad_sftp_t *c, const char *path, char *err, size_t cap) {
  if (sftp_unlink(c->sftp, path) == 0) return 0;
  return sftp_err(c, "cannot remove", path, err, cap);
}

int cad_sftp_rename(cad_sftp_t *c, const char *from, const char *to, char *err, size_t cap) {
  if (sftp_rename(c->sftp, from, to) == 0) return 0;
  return sftp_err(c, "cannot rename", from, err, cap);
}
