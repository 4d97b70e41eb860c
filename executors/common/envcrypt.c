/*
 * envcrypt.c - see envcrypt.h. OpenSSL EVP only (X25519, AES-256-GCM).
 */
#include "executors/common/envcrypt.h"

#include "common/util.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

static int derive(EVP_PKEY *mine, const uint8_t peer_pub[32], uint8_t key[32])
{
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_pub, 32);
	EVP_PKEY_CTX *ctx = peer ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
	size_t len = 32;
	int ok = ctx && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, peer) == 1 &&
		 EVP_PKEY_derive(ctx, key, &len) == 1 && len == 32;

	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	return ok ? 0 : -1;
}

int exec_env_encrypt(const char *pubkey_hex, const struct exec_env_var *vars, size_t n, char **hex_out,
		     struct tdxr_err *err)
{
	uint8_t peer[32], key[32], iv[12], tag[16], eph_pub[32], *out = NULL;
	EVP_PKEY_CTX *kctx = NULL;
	EVP_PKEY *eph = NULL;
	EVP_CIPHER_CTX *c = NULL;
	json_t *o = NULL, *arr;
	char *plain = NULL;
	size_t plen, i, pl = 32;
	int len = 0, fin = 0, rc = TDXR_ERROR;

	*hex_out = NULL;
	if (pubkey_hex && strncmp(pubkey_hex, "0x", 2) == 0)
		pubkey_hex += 2;
	if (pubkey_hex == NULL || tdxr_hex_decode_exact(pubkey_hex, peer, 32))
		return tdxr_err_set(err, TDXR_EINVAL, "env encryption: the app's public key is not 32 bytes of hex");
	o = json_object();
	arr = json_array();
	for (i = 0; i < n; i++) {
		json_t *e = json_object();

		json_object_set_new(e, "key", json_string(vars[i].key));
		json_object_set_new(e, "value", json_string(vars[i].value));
		json_array_append_new(arr, e);
	}
	json_object_set_new(o, "env", arr);
	plain = json_dumps(o, JSON_COMPACT);
	if (plain == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
		goto out;
	}
	plen = strlen(plain);
	kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	if (kctx == NULL || EVP_PKEY_keygen_init(kctx) != 1 || EVP_PKEY_keygen(kctx, &eph) != 1 ||
	    EVP_PKEY_get_raw_public_key(eph, eph_pub, &pl) != 1 || derive(eph, peer, key) ||
	    RAND_bytes(iv, sizeof(iv)) != 1) {
		rc = tdxr_err_set(err, TDXR_ERROR, "env encryption: X25519 failed");
		goto out;
	}
	out = malloc(32 + 12 + plen + 16);
	c = EVP_CIPHER_CTX_new();
	if (out == NULL || c == NULL || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) != 1 ||
	    EVP_EncryptUpdate(c, out + 44, &len, (const uint8_t *)plain, (int)plen) != 1 ||
	    EVP_EncryptFinal_ex(c, out + 44 + len, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) {
		rc = tdxr_err_set(err, TDXR_ERROR, "env encryption: AES-256-GCM failed");
		goto out;
	}
	memcpy(out, eph_pub, 32);
	memcpy(out + 32, iv, 12);
	memcpy(out + 44 + len + fin, tag, 16);
	*hex_out = tdxr_hex_strdup(out, 44 + (size_t)(len + fin) + 16);
	rc = *hex_out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	OPENSSL_cleanse(key, sizeof(key));
	if (plain) {
		OPENSSL_cleanse(plain, strlen(plain));
		free(plain);
	}
	free(out);
	json_decref(o);
	EVP_CIPHER_CTX_free(c);
	EVP_PKEY_CTX_free(kctx);
	EVP_PKEY_free(eph);
	return rc;
}

int exec_env_decrypt(const uint8_t privkey[32], const char *hex, char **json_out, struct tdxr_err *err)
{
	uint8_t key[32], *b = NULL, *pt = NULL;
	size_t n = strlen(hex) / 2;
	EVP_PKEY *me = NULL;
	EVP_CIPHER_CTX *c = NULL;
	int len = 0, fin = 0, rc = TDXR_EINVAL;

	*json_out = NULL;
	b = malloc(n + 1);
	if (b == NULL || tdxr_hex_decode(hex, strlen(hex), b, n + 1, &n) || n < 60) {
		tdxr_err_set(err, TDXR_EINVAL, "env decryption: not hex or too short");
		goto out;
	}
	me = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, privkey, 32);
	pt = malloc(n);
	c = EVP_CIPHER_CTX_new();
	if (me == NULL || pt == NULL || c == NULL || derive(me, b, key) ||
	    EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, b + 32) != 1 ||
	    EVP_DecryptUpdate(c, pt, &len, b + 44, (int)(n - 60)) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, b + n - 16) != 1 || EVP_DecryptFinal_ex(c, pt + len, &fin) != 1) {
		rc = tdxr_err_set(err, TDXR_EAUTH, "env decryption: authentication failed");
		goto out;
	}
	*json_out = strndup((const char *)pt, (size_t)(len + fin));
	rc = *json_out ? 0 : tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
out:
	OPENSSL_cleanse(key, sizeof(key));
	free(b);
	if (pt) {
		OPENSSL_cleanse(pt, n);
		free(pt);
	}
	EVP_CIPHER_CTX_free(c);
	EVP_PKEY_free(me);
	return rc;
}
