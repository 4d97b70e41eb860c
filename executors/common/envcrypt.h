/*
 * envcrypt.h - dstack's encrypted environment (Phala Cloud and the dstack VMM):
 * plaintext {"env":[{"key":K,"value":V},...]} sealed to the app's X25519 key:
 * shared = X25519(ephemeral, app_env_encrypt_pubkey); AES-256-GCM keyed with
 * the raw 32-byte shared secret, random 12-byte IV; output hex(ephemeral_pub ||
 * iv || ciphertext || tag) (CONTRACTS.md §1, @phala/dstack-sdk encrypt-env-vars).
 * Values are secrets (SSH keys, tokens): the plaintext is wiped after use.
 */
#ifndef TDXR_EXECUTORS_COMMON_ENVCRYPT_H
#define TDXR_EXECUTORS_COMMON_ENVCRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct exec_env_var {
	const char *key;
	const char *value;
};

/* *hex_out is malloc'd lower-case hex. pubkey_hex: 64 hex digits (optional 0x). */
int exec_env_encrypt(const char *pubkey_hex, const struct exec_env_var *vars, size_t n, char **hex_out,
		     struct tdxr_err *err);
/* The inverse, for tests and test servers: privkey 32 raw bytes. *json_out malloc'd. */
int exec_env_decrypt(const uint8_t privkey[32], const char *hex, char **json_out, struct tdxr_err *err);

#endif
