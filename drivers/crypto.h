/* The only file that talks to OpenSSL's libcrypto for the backup
 * repository: SHA-256, HMAC-SHA256, AES-256-GCM and random bytes (the
 * certificate checks of TLS are engine/core/http.c's).  Every function is thread-safe: the repository
 * hashes, compresses and encrypts on a pool of worker threads. */
#ifndef VMFERRY_CRYPTO_H
#define VMFERRY_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_HASH_LEN 32
#define CRYPTO_KEY_LEN 32
#define CRYPTO_NONCE_LEN 12
#define CRYPTO_TAG_LEN 16

void crypto_sha256(const void *buf, size_t len, uint8_t out[CRYPTO_HASH_LEN]);
void crypto_hmac_sha256(const uint8_t key[CRYPTO_KEY_LEN], const void *buf, size_t len,
    uint8_t out[CRYPTO_HASH_LEN]);

/* SHA-256 of a stream read in pieces (an index file of any size). */
struct crypto_sha256;
struct crypto_sha256 *crypto_sha256_new(void);
void crypto_sha256_add(struct crypto_sha256 *h, const void *buf, size_t len);
/* The digest; frees h. */
void crypto_sha256_end(struct crypto_sha256 *h, uint8_t out[CRYPTO_HASH_LEN]);

/* len bytes from the operating system's generator: 0, or -1 when it
 * cannot give them (then nothing must be encrypted). */
int crypto_random(void *buf, size_t len);
/* Whether a[0..n) equals b[0..n), in time that does not depend on where
 * they differ (OpenSSL's CRYPTO_memcmp): for secrets a client presents. */
int crypto_equal(const void *a, const void *b, size_t n);

/* AES-256-GCM of in[0..len) into out (which may be in), the 16-byte tag
 * into tag; aad is authenticated, not encrypted.  0, or -1 (a library
 * failure). */
int crypto_gcm_seal(const uint8_t key[CRYPTO_KEY_LEN], const uint8_t nonce[CRYPTO_NONCE_LEN], const void *aad,
    size_t aad_len, const void *in, size_t len, void *out, uint8_t tag[CRYPTO_TAG_LEN]);
/* The inverse: 0, or -1 when the tag does not match (a wrong key, damaged
 * bytes, other aad) — then out holds nothing to use. */
int crypto_gcm_open(const uint8_t key[CRYPTO_KEY_LEN], const uint8_t nonce[CRYPTO_NONCE_LEN], const void *aad,
    size_t aad_len, const void *in, size_t len, const uint8_t tag[CRYPTO_TAG_LEN], void *out);

#endif
