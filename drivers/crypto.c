#include "drivers/crypto.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "engine/core/util.h"

void
crypto_sha256(const void *buf, size_t len, uint8_t out[CRYPTO_HASH_LEN])
{
	SHA256(buf, len, out);
}

void
crypto_hmac_sha256(const uint8_t key[CRYPTO_KEY_LEN], const void *buf, size_t len, uint8_t out[CRYPTO_HASH_LEN])
{
	unsigned int n = CRYPTO_HASH_LEN;

	if (HMAC(EVP_sha256(), key, CRYPTO_KEY_LEN, buf, len, out, &n) == NULL)
		fatal("HMAC-SHA256 failed");
}

struct crypto_sha256 {
	EVP_MD_CTX *ctx;
};

struct crypto_sha256 *
crypto_sha256_new(void)
{
	struct crypto_sha256 *h = xmalloc(sizeof(*h));

	/* Failing here means no memory or a broken libcrypto: fatal, as
	 * out-of-memory is everywhere. */
	if ((h->ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		fatal("SHA-256: cannot start a digest");
	return h;
}

void
crypto_sha256_add(struct crypto_sha256 *h, const void *buf, size_t len)
{
	if (EVP_DigestUpdate(h->ctx, buf, len) != 1)
		fatal("SHA-256: digest update failed");
}

void
crypto_sha256_end(struct crypto_sha256 *h, uint8_t out[CRYPTO_HASH_LEN])
{
	unsigned int n = CRYPTO_HASH_LEN;

	if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1)
		fatal("SHA-256: digest failed");
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

int
crypto_random(void *buf, size_t len)
{
	return len <= INT_MAX && RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

/* One GCM pass; enc 1 seals, 0 opens.  EVP takes int lengths, so the
 * data goes in pieces. */
static int
gcm(int enc, const uint8_t key[CRYPTO_KEY_LEN], const uint8_t nonce[CRYPTO_NONCE_LEN], const void *aad,
    size_t aad_len, const void *in, size_t len, void *out, uint8_t tag[CRYPTO_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	const unsigned char *ip = in;
	unsigned char *op = out;
	int n, rc = -1;
	size_t off = 0;

	if (ctx == NULL || aad_len > INT_MAX)
		goto done;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRYPTO_NONCE_LEN, NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
		goto done;
	if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		goto done;
	while (off < len) {
		size_t step = len - off > (1u << 30) ? (1u << 30) : len - off;

		if (EVP_CipherUpdate(ctx, op + off, &n, ip + off, (int)step) != 1 || (size_t)n != step)
			goto done;
		off += step;
	}
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN, tag) != 1)
		goto done;
	if (EVP_CipherFinal_ex(ctx, op + off, &n) != 1)
		goto done;
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN, tag) != 1)
		goto done;
	rc = 0;
done:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int
crypto_gcm_seal(const uint8_t key[CRYPTO_KEY_LEN], const uint8_t nonce[CRYPTO_NONCE_LEN], const void *aad,
    size_t aad_len, const void *in, size_t len, void *out, uint8_t tag[CRYPTO_TAG_LEN])
{
	return gcm(1, key, nonce, aad, aad_len, in, len, out, tag);
}

int
crypto_gcm_open(const uint8_t key[CRYPTO_KEY_LEN], const uint8_t nonce[CRYPTO_NONCE_LEN], const void *aad,
    size_t aad_len, const void *in, size_t len, const uint8_t tag[CRYPTO_TAG_LEN], void *out)
{
	uint8_t t[CRYPTO_TAG_LEN];

	memcpy(t, tag, sizeof(t));
	return gcm(0, key, nonce, aad, aad_len, in, len, out, t);
}

int
crypto_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
