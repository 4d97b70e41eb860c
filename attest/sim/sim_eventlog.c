/*
 * sim_eventlog.c - the dstack JSON event log of a simulated CVM and its RTMR
 * replay.
 *
 * A few boot-like TCG events on RTMR0-2 (their digests are SHA-384 of the
 * payload: nothing checks boot digests against payloads, only the replay), then
 * the dstack runtime events on RTMR3 (event type 0x08000001) in the order the
 * dstack guest emits them: system-preparing, app-id, compose-hash, instance-id,
 * boot-mr-done, os-image-hash, key-provider, system-ready, then the caller's app
 * events. Runtime digest = SHA-384(u32le(type) || ":" || name || ":" || payload).
 * RTMRn = SHA-384 extend from 48 zero bytes over the recorded digests in order.
 */
#include "attest/sim/sim_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char DEFAULT_COMPOSE[] =
    "{\"manifest_version\":2,\"name\":\"tdx-runner-sim\",\"runner\":\"docker-compose\","
    "\"docker_compose_file\":\"services:\\n  runner:\\n    image: debian:stable-slim\\n\","
    "\"gateway_enabled\":true,\"public_logs\":false,\"public_sysinfo\":false,\"public_tcbinfo\":true,"
    "\"key_provider_id\":\"\",\"allowed_envs\":[],\"no_instance_id\":false,\"secure_time\":false,"
    "\"kms_enabled\":false}";
static const char DEFAULT_KEY_PROVIDER[] = "{\"name\":\"none\",\"id\":\"\"}";

const char *sim_default_app_compose(void)
{
	return DEFAULT_COMPOSE;
}

void sim_eventlog_opts_init(struct sim_eventlog_opts *o)
{
	static const char app[] = "tdx-runner simulated app id";
	static const char inst[] = "tdx-runner simulated instance id";
	static const char os[] = "tdx-runner simulated OS image";
	uint8_t h[32];

	memset(o, 0, sizeof(*o));
	sim__sha256(app, sizeof(app) - 1, h);
	memcpy(o->app_id, h, 20);
	sim__sha256(inst, sizeof(inst) - 1, h);
	memcpy(o->instance_id, h, 20);
	sim__sha256(os, sizeof(os) - 1, o->os_image_hash);
}

struct boot_event {
	uint32_t imr;
	uint32_t type;
	const char *payload;
	size_t len;
};

#define BOOT(imr, type, s)                                                                                   \
	{                                                                                                    \
		imr, type, s, sizeof(s) - 1                                                                  \
	}
static const struct boot_event BOOT_EVENTS[] = {
	BOOT(0, 0x8000000bu, "\x09TdxTable\x00\x01\x00\x00\x00\x00\x00\x00\x00"), /* EV_EFI_HANDOFF_TABLES2 */
	BOOT(0, 0x0000000au,
	     "QEMU FW CFG\x00"
	     "BootMenu"),                           /* EV_PLATFORM_CONFIG_FLAGS */
	BOOT(0, 0x80000001u, "SecureBoot\x00\x00"), /* EV_EFI_VARIABLE_DRIVER_CONFIG */
	BOOT(0, 0x0000000au, "ACPI DATA"),
	BOOT(0, 0x00000004u, "\x00\x00\x00\x00"),                 /* EV_SEPARATOR */
	BOOT(1, 0x80000003u, "tdx-runner simulated boot loader"), /* EV_EFI_BOOT_SERVICES_APPLICATION */
	BOOT(1, 0x80000007u, "Calling EFI Application from Boot Option"), /* EV_EFI_ACTION */
	BOOT(1, 0x00000004u, "\x00\x00\x00\x00"),
	BOOT(2, 0x00000006u, "LOADED_IMAGE::LoadOptions console=ttyS0"), /* EV_EVENT_TAG */
	BOOT(2, 0x00000006u, "Linux initrd"),
	BOOT(1, 0x80000007u, "Exit Boot Services Invocation"),
	BOOT(1, 0x80000007u, "Exit Boot Services Returned with Success"),
};

struct log_ctx {
	json_t *arr;
	uint8_t rtmr[4][48];
	int bad;
};

static void extend(uint8_t mr[48], const uint8_t digest[48])
{
	uint8_t in[96];

	memcpy(in, mr, 48);
	memcpy(in + 48, digest, 48);
	sim__sha384(in, sizeof(in), mr);
}

static void log_add(struct log_ctx *c, uint32_t imr, uint32_t type, const uint8_t digest[48],
                    const char *name, const uint8_t *payload, size_t len)
{
	json_t *e = json_object();
	char dhex[97], *phex = tdxr_hex_strdup(payload, len);

	extend(c->rtmr[imr], digest);
	tdxr_hex_encode(digest, 48, dhex);
	if (e == NULL || phex == NULL || json_object_set_new(e, "imr", json_integer(imr)) ||
	    json_object_set_new(e, "event_type", json_integer(type)) ||
	    json_object_set_new(e, "digest", json_string(dhex)) ||
	    json_object_set_new(e, "event", json_string(name)) ||
	    json_object_set_new(e, "event_payload", json_string(phex)) || json_array_append(c->arr, e))
		c->bad = 1;
	json_decref(e);
	free(phex);
}

static void runtime_digest(const char *name, const uint8_t *payload, size_t len, uint8_t out[48])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t t[4];
	unsigned int olen = 0;

	t[0] = (uint8_t)ATTEST_EVENT_DSTACK_RUNTIME;
	t[1] = (uint8_t)(ATTEST_EVENT_DSTACK_RUNTIME >> 8);
	t[2] = (uint8_t)(ATTEST_EVENT_DSTACK_RUNTIME >> 16);
	t[3] = (uint8_t)(ATTEST_EVENT_DSTACK_RUNTIME >> 24);
	if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha384(), NULL) || !EVP_DigestUpdate(md, t, 4) ||
	    !EVP_DigestUpdate(md, ":", 1) || !EVP_DigestUpdate(md, name, strlen(name)) ||
	    !EVP_DigestUpdate(md, ":", 1) || (len && !EVP_DigestUpdate(md, payload, len)) ||
	    !EVP_DigestFinal_ex(md, out, &olen))
		memset(out, 0, 48); /* only on allocation failure; the caller's checks then fail */
	EVP_MD_CTX_free(md);
}

static void runtime_add(struct log_ctx *c, const char *name, const uint8_t *payload, size_t len, int corrupt)
{
	uint8_t d[48];

	runtime_digest(name, payload, len, d);
	if (corrupt)
		d[0] ^= 0x01;
	log_add(c, 3, ATTEST_EVENT_DSTACK_RUNTIME, d, name, payload, len);
}

int sim_eventlog_make(const struct sim_eventlog_opts *o, char **json, uint8_t rtmr[4][48],
                      struct tdxr_err *err)
{
	struct log_ctx c;
	const char *compose = o->app_compose ? o->app_compose : DEFAULT_COMPOSE;
	size_t compose_len = o->app_compose && o->app_compose_len ? o->app_compose_len : strlen(compose);
	const char *kp = o->key_provider ? o->key_provider : DEFAULT_KEY_PROVIDER;
	uint8_t ch[32], d[48];
	int rc = 0;

	*json = NULL;
	memset(&c, 0, sizeof(c));
	if ((c.arr = json_array()) == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	for (size_t i = 0; i < sizeof(BOOT_EVENTS) / sizeof(BOOT_EVENTS[0]); i++) {
		const struct boot_event *b = &BOOT_EVENTS[i];

		sim__sha384(b->payload, b->len, d);
		log_add(&c, b->imr, b->type, d, "", (const uint8_t *)b->payload, b->len);
	}
	sim__sha256(compose, compose_len, ch);
	runtime_add(&c, "system-preparing", NULL, 0, 0);
	runtime_add(&c, "app-id", o->app_id, 20, 0);
	runtime_add(&c, "compose-hash", ch, 32, o->corrupt_digest);
	runtime_add(&c, "instance-id", o->instance_id, 20, 0);
	runtime_add(&c, "boot-mr-done", NULL, 0, 0);
	runtime_add(&c, "os-image-hash", o->os_image_hash, 32, 0);
	runtime_add(&c, "key-provider", (const uint8_t *)kp, strlen(kp), 0);
	if (!o->omit_system_ready)
		runtime_add(&c, "system-ready", NULL, 0, 0);
	for (size_t i = 0; i < o->n_extra; i++) {
		if (o->extra[i].name == NULL) {
			rc = tdxr_err_set(err, TDXR_EINVAL, "sim: extra event %zu has no name", i);
			goto out;
		}
		runtime_add(&c, o->extra[i].name, o->extra[i].payload, o->extra[i].payload_len, 0);
	}
	if (c.bad || (*json = json_dumps(c.arr, JSON_COMPACT)) == NULL) {
		rc = tdxr_err_set(err, TDXR_ENOMEM, "sim: building the event log JSON failed");
		goto out;
	}
	memcpy(rtmr, c.rtmr, sizeof(c.rtmr));
out:
	json_decref(c.arr);
	return rc;
}
