/*
 * test_envcrypt.c - dstack encrypted environment: round trip, tamper detection,
 * a wrong key, malformed input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "executors/common/envcrypt.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static void keypair(uint8_t priv[32], char pub_hex[65])
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *k = NULL;
	uint8_t pub[32];
	size_t n = 32;

	assert_int_equal(EVP_PKEY_keygen_init(c), 1);
	assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
	assert_int_equal(EVP_PKEY_get_raw_private_key(k, priv, &n), 1);
	n = 32;
	assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &n), 1);
	tdxr_hex_encode(pub, 32, pub_hex);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
}

static void sealed_env_opens_only_with_the_app_key_and_untampered(void **state)
{
	const struct exec_env_var vars[] = {{"DSTACK_AUTHORIZED_KEYS", "ssh-ed25519 AAAA... lease"},
					    {"QUOTE\"S", "line\nbreak"}};
	uint8_t priv[32], other[32];
	char pub[65], pub2[65], *hex = NULL, *json = NULL;
	struct tdxr_err e;

	keypair(priv, pub);
	keypair(other, pub2);
	assert_int_equal(exec_env_encrypt(pub, vars, 2, &hex, &e), 0);
	assert_int_equal(exec_env_decrypt(priv, hex, &json, &e), 0);
	assert_string_equal(json, "{\"env\":[{\"key\":\"DSTACK_AUTHORIZED_KEYS\",\"value\":\"ssh-ed25519 AAAA... lease\"},"
				  "{\"key\":\"QUOTE\\\"S\",\"value\":\"line\\nbreak\"}]}");
	free(json);
	assert_int_equal(exec_env_decrypt(other, hex, &json, &e), TDXR_EAUTH);
	hex[100] = hex[100] == '0' ? '1' : '0';
	assert_int_equal(exec_env_decrypt(priv, hex, &json, &e), TDXR_EAUTH);
	free(hex);
	/* Two seals of the same plaintext differ (fresh ephemeral key and IV). */
	{
		char *a = NULL, *b = NULL;

		assert_int_equal(exec_env_encrypt(pub, vars, 1, &a, &e), 0);
		assert_int_equal(exec_env_encrypt(pub, vars, 1, &b, &e), 0);
		assert_string_not_equal(a, b);
		free(a);
		free(b);
	}
	assert_int_equal(exec_env_encrypt("00", vars, 1, &hex, &e), TDXR_EINVAL);
	assert_int_equal(exec_env_encrypt(NULL, vars, 1, &hex, &e), TDXR_EINVAL);
	assert_int_equal(exec_env_decrypt(priv, "zz", &json, &e), TDXR_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sealed_env_opens_only_with_the_app_key_and_untampered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
