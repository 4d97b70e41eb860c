/*
 * test_lease.c - the lease store: claims written before anything else, atomic
 * 0600 files, exclusive ownership by flock, adoption of what a dead process
 * left (including after SIGKILL), strict parsing of claims.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/lease.h"
#include "common/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/tdxr-lease-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct lease_claim claim(const char *id)
{
	struct lease_claim c;

	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "%s", id);
	snprintf(c.executor, sizeof(c.executor), "local");
	snprintf(c.state, sizeof(c.state), "creating");
	snprintf(c.name, sizeof(c.name), "tdxr-%s", id);
	return c;
}

static void claim_is_on_disk_private_and_exclusive(void **state)
{
	struct lease_store *s = NULL;
	struct lease_handle *h = NULL, *h2 = NULL;
	struct lease_claim c = claim("l-one"), *list = NULL;
	struct tdxr_err e;
	struct stat st;
	char path[256];
	int *live = NULL;
	size_t n = 0;

	assert_int_equal(lease_store_open(dir, &s, &e), 0);
	assert_int_equal(lease_claim_create(s, &c, &h, &e), 0);
	snprintf(path, sizeof(path), "%s/leases/l-one.json", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(lease_handle_claim(h)->pid, (int)getpid());
	/* The same id again, and adoption while held, are refused. */
	assert_int_not_equal(lease_claim_create(s, &c, &h2, &e), 0);
	assert_int_equal(lease_claim_try_adopt(s, "l-one", &h2, &e), TDXR_ETIMEOUT);
	assert_int_equal(lease_store_list(s, &list, &live, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(live[0], 1);
	free(list);
	free(live);
	/* State changes are rewritten atomically. */
	snprintf(c.state, sizeof(c.state), "ready");
	snprintf(c.cloud_id, sizeof(c.cloud_id), "vm-42");
	assert_int_equal(lease_claim_update(h, &c, &e), 0);
	lease_handle_close(h); /* e.g. run --keep: the claim stays, unowned */
	assert_int_equal(lease_store_list(s, &list, &live, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(live[0], 0);
	assert_string_equal(list[0].state, "ready");
	assert_string_equal(list[0].cloud_id, "vm-42");
	free(list);
	free(live);
	/* The reaper adopts it, destroys the box (not here), removes the claim. */
	assert_int_equal(lease_claim_try_adopt(s, "l-one", &h, &e), 0);
	assert_string_equal(lease_handle_claim(h)->cloud_id, "vm-42");
	assert_int_equal(lease_claim_remove(h, &e), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(lease_claim_try_adopt(s, "l-one", &h, &e), TDXR_ENOTFOUND);
	lease_store_free(s);
}

static void a_killed_owner_leaves_an_adoptable_claim(void **state)
{
	struct lease_store *s = NULL;
	struct lease_handle *h = NULL;
	struct lease_claim *list = NULL;
	struct tdxr_err e;
	int *live = NULL, status = 0;
	size_t n = 0;
	pid_t pid;

	assert_int_equal(lease_store_open(dir, &s, &e), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct lease_claim c = claim("l-crash");
		struct lease_handle *ch = NULL;

		if (lease_claim_create(s, &c, &ch, NULL) != 0)
			_exit(3);
		kill(getpid(), SIGKILL); /* no cleanup of any kind */
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(lease_store_list(s, &list, &live, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "l-crash");
	assert_int_equal(list[0].pid, (int)pid);
	assert_int_equal(live[0], 0);
	free(list);
	free(live);
	assert_int_equal(lease_claim_try_adopt(s, "l-crash", &h, &e), 0);
	assert_int_equal(lease_claim_remove(h, &e), 0);
	lease_store_free(s);
}

static void corrupt_or_hostile_claims_are_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"{\"id\":\"../x\"}",
		"{\"id\":\"l-a\",\"executor\":\"local\",\"state\":\"s\",\"name\":\"n\",\"cloud_id\":\"\","
		"\"app_id\":\"\","
		"\"owner_host\":\"\",\"job\":\"\",\"gateway\":\"\",\"ssh_key_path\":\"\",\"host_key_sha256\":"
		"5}",
		"{\"id\":\"l-a\",\"id\":\"l-b\"}",
	};
	struct lease_store *s = NULL;
	struct lease_claim c, *list = NULL;
	struct tdxr_err e;
	char path[256];
	int *live = NULL;
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(lease_claim_parse((const uint8_t *)bad[i], strlen(bad[i]), &c, &e),
		                 TDXR_EINVAL);
	c = claim("l-bad");
	assert_int_not_equal(lease_claim_parse((const uint8_t *)"{", 1, &c, &e), 0);
	c = claim("UPPER");
	assert_int_equal(lease_store_open(dir, &s, &e), 0);
	{
		struct lease_handle *h = NULL;

		assert_int_equal(lease_claim_create(s, &c, &h, &e), TDXR_EINVAL);
	}
	snprintf(path, sizeof(path), "%s/leases/l-garbled.json", dir);
	assert_int_equal(tdxr_file_write_atomic(path, "{\"id\":", 6, 0600, &e), 0);
	assert_int_equal(lease_store_list(s, &list, &live, &n, &e), TDXR_EINVAL);
	assert_non_null(strstr(e.msg, "l-garbled.json"));
	unlink(path);
	lease_store_free(s);
}

static void ids_are_fresh(void **state)
{
	char a[LEASE_ID_MAX], b[LEASE_ID_MAX];

	lease_id_new(a);
	lease_id_new(b);
	assert_int_equal(strlen(a), 18);
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(claim_is_on_disk_private_and_exclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(a_killed_owner_leaves_an_adoptable_claim, setup, teardown),
		cmocka_unit_test_setup_teardown(corrupt_or_hostile_claims_are_errors, setup, teardown),
		cmocka_unit_test(ids_are_fresh),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
