/* admin_token.c - API tokens: making one, hashing one (admin.h). */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>

#include "admin.h"
#include "cad_error.h"

int cad_admin_token_hash(const char *tok, size_t len, unsigned char out[32]) {
  unsigned int n = 0;
  if (EVP_Digest(tok, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32) return CAD_E_NOMEM;
  return 0;
}

int cad_admin_token_new(char *tok, char *hash) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char raw[CAD_ADMIN_TOKEN_LEN];
  if (RAND_bytes(raw, sizeof raw) != 1) return CAD_E_IO;
  for (size_t i = 0; i < CAD_ADMIN_TOKEN_LEN; i++) tok[i] = abc[raw[i] & 63];
  tok[CAD_ADMIN_TOKEN_LEN] = 0;
  OPENSSL_cleanse(raw, sizeof raw);
  unsigned char h[32];
  if (cad_admin_token_hash(tok, CAD_ADMIN_TOKEN_LEN, h) < 0) return CAD_E_NOMEM;
  int off = snprintf(hash, CAD_ADMIN_HASH_LEN + 1, "sha256:");
  for (size_t i = 0; i < 32; i++) off += snprintf(hash + off, 3, "%02x", h[i]);
  return 0;
}
