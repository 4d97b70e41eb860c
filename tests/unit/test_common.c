/*
 * test_common.c - common/: errors, bounded buffers and cursors, checked
 * parsing, hex, time, files, secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void err_set_records_code_and_truncates_long_messages(void **state)
{
	struct tdxr_err e;
	char big[600];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(tdxr_err_set(&e, TDXR_EATTEST, "step: %s", "bad"), TDXR_EATTEST);
	assert_int_equal(e.code, TDXR_EATTEST);
	assert_string_equal(e.msg, "step: bad");
	tdxr_err_set(&e, TDXR_EINVAL, "%s", big);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	assert_string_equal(e.msg + sizeof(e.msg) - 4, "...");
	tdxr_err_set(&e, TDXR_EIO, "inner");
	tdxr_err_prefix(&e, "outer %d", 1);
	assert_string_equal(e.msg, "outer 1: inner");
	assert_int_equal(tdxr_err_set(NULL, TDXR_ETIMEOUT, "x"), TDXR_ETIMEOUT);
	assert_string_equal(tdxr_code_name(TDXR_ETOOBIG), "ETOOBIG");
}

static void buf_refuses_appends_past_its_cap_and_keeps_content(void **state)
{
	struct tdxr_buf b;
	struct tdxr_err e;

	tdxr_buf_init(&b, 8);
	assert_int_equal(tdxr_buf_append(&b, "abcde", 5, &e), 0);
	assert_int_equal(tdxr_buf_append(&b, "fghij", 5, &e), TDXR_ETOOBIG);
	assert_int_equal(b.len, 5);
	assert_string_equal((char *)b.data, "abcde");
	assert_int_equal(tdxr_buf_appendf(&b, &e, "%d", 123), 0);
	assert_string_equal((char *)b.data, "abcde123");
	assert_int_equal(tdxr_buf_appendf(&b, &e, "%d", 4), TDXR_ETOOBIG);
	tdxr_buf_dispose(&b);
	tdxr_buf_dispose(&b); /* idempotent */
}

static void cursor_getters_fail_on_short_input_without_moving(void **state)
{
	static const uint8_t d[] = { 1, 2, 3, 4, 5, 6, 7 };
	struct tdxr_cur c;
	uint16_t a;
	uint32_t b;
	uint64_t q;

	tdxr_cur_init(&c, d, sizeof(d));
	assert_int_equal(tdxr_cur_u16le(&c, &a), 0);
	assert_int_equal(a, 0x0201);
	assert_int_equal(tdxr_cur_u64le(&c, &q), TDXR_EINVAL);
	assert_int_equal(c.off, 2);
	assert_int_equal(tdxr_cur_u32le(&c, &b), 0);
	assert_int_equal(b, 0x06050403u);
	assert_int_equal(tdxr_cur_skip(&c, 2), TDXR_EINVAL);
	assert_int_equal(tdxr_cur_left(&c), 1);
	assert_int_equal(tdxr_cur_skip(&c, SIZE_MAX), TDXR_EINVAL);
}

static void integers_are_parsed_strictly(void **state)
{
	uint64_t u;
	int64_t i;

	assert_int_equal(tdxr_parse_u64("42", 100, &u, NULL), 0);
	assert_int_equal(u, 42);
	assert_int_not_equal(tdxr_parse_u64("101", 100, &u, NULL), 0);
	assert_int_not_equal(tdxr_parse_u64("-1", 100, &u, NULL), 0);
	assert_int_not_equal(tdxr_parse_u64("1x", 100, &u, NULL), 0);
	assert_int_not_equal(tdxr_parse_u64(" 1", 100, &u, NULL), 0);
	assert_int_not_equal(tdxr_parse_u64("", 100, &u, NULL), 0);
	assert_int_not_equal(tdxr_parse_u64("99999999999999999999999", UINT64_MAX, &u, NULL), 0);
	assert_int_equal(tdxr_parse_i64("-5", -10, 10, &i, NULL), 0);
	assert_int_equal(i, -5);
	assert_int_not_equal(tdxr_parse_i64("-11", -10, 10, &i, NULL), 0);
}

static void hex_strict_and_text_forms(void **state)
{
	uint8_t out[4], *bin = NULL;
	size_t n = 0;
	char s[9];

	assert_int_equal(tdxr_hex_decode("0aFf", 4, out, sizeof(out), &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[1], 0xff);
	assert_int_not_equal(tdxr_hex_decode("0a F", 4, out, sizeof(out), &n), 0);
	assert_int_not_equal(tdxr_hex_decode("abc", 3, out, sizeof(out), &n), 0);
	assert_int_not_equal(tdxr_hex_decode("0011223344", 10, out, sizeof(out), &n), 0);
	assert_int_not_equal(tdxr_hex_decode_exact("0011", out, 4), 0);
	assert_int_equal(tdxr_hex_decode_text((const uint8_t *)" 0xde ad\nbe ef\n", 15, &bin, &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(bin, "\xde\xad\xbe\xef", 4);
	free(bin);
	assert_int_not_equal(tdxr_hex_decode_text((const uint8_t *)"abc", 3, &bin, &n), 0);
	assert_int_not_equal(tdxr_hex_decode_text((const uint8_t *)"zz", 2, &bin, &n), 0);
	tdxr_hex_encode((const uint8_t *)"\x01\xab\x00\xff", 4, s);
	assert_string_equal(s, "01ab00ff");
}

static void rfc3339_times_parse_and_reject_offsets(void **state)
{
	int64_t t;
	char s[21];

	assert_int_equal(tdxr_time_parse_rfc3339("2025-07-04T10:00:00Z", &t), 0);
	assert_int_equal(t, 1751623200);
	assert_int_equal(tdxr_time_parse_rfc3339("2025-07-04T10:00:00.123Z", &t), 0);
	assert_int_equal(t, 1751623200);
	assert_int_equal(tdxr_time_parse_rfc3339("1970-01-01T00:00:00+00:00", &t), 0);
	assert_int_equal(t, 0);
	assert_int_not_equal(tdxr_time_parse_rfc3339("2025-07-04T10:00:00+02:00", &t), 0);
	assert_int_not_equal(tdxr_time_parse_rfc3339("2025-02-30T10:00:00Z", &t), 0);
	assert_int_not_equal(tdxr_time_parse_rfc3339("2025-07-04", &t), 0);
	tdxr_time_format(1751623200, s);
	assert_string_equal(s, "2025-07-04T10:00:00Z");
}

static void files_are_read_with_a_cap_and_written_atomically(void **state)
{
	char dir[] = "/tmp/tdxr-test-XXXXXX", path[256];
	uint8_t *d = NULL;
	size_t n = 0;
	struct tdxr_err e;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(tdxr_file_write_atomic(path, "hello", 5, 0600, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tdxr_file_read(path, 5, &d, &n, &e), 0);
	assert_int_equal(n, 5);
	assert_string_equal((char *)d, "hello");
	free(d);
	assert_int_equal(tdxr_file_read(path, 4, &d, &n, &e), TDXR_ETOOBIG);
	assert_null(d);
	assert_int_equal(tdxr_file_read("/nonexistent/x", 4, &d, &n, &e), TDXR_EIO);
	unlink(path);
	rmdir(dir);
}

static void secrets_require_private_files_and_leave_the_environment(void **state)
{
	char dir[] = "/tmp/tdxr-test-XXXXXX", path[256];
	struct tdxr_secret *s = NULL;
	struct tdxr_err e;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/token", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("glrt-abc\n", f);
	fclose(f);
	chmod(path, 0644);
	assert_int_equal(tdxr_secret_from_file(path, &s, &e), TDXR_EAUTH);
	assert_non_null(strstr(e.msg, "chmod 600"));
	assert_null(s);
	chmod(path, 0600);
	assert_int_equal(tdxr_secret_from_file(path, &s, &e), 0);
	assert_string_equal(tdxr_secret_str(s), "glrt-abc");
	assert_int_equal(tdxr_secret_len(s), 8);
	tdxr_secret_free(s);
	tdxr_secret_free(NULL);
	setenv("TDXR_TEST_SECRET", "s3cret", 1);
	assert_int_equal(tdxr_secret_from_env("TDXR_TEST_SECRET", &s, &e), 0);
	assert_string_equal(tdxr_secret_str(s), "s3cret");
	assert_null(getenv("TDXR_TEST_SECRET"));
	tdxr_secret_free(s);
	assert_int_equal(tdxr_secret_from_env("TDXR_TEST_SECRET", &s, &e), TDXR_ENOTFOUND);
	unlink(path);
	rmdir(dir);
}

static void log_json_lines_escape_and_filter_by_level(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	enum tdxr_log_format fmt = TDXR_LOG_TEXT;
	enum tdxr_log_level lvl = TDXR_LOG_INFO;

	assert_int_equal(tdxr_log_parse("json", "warn", &fmt, &lvl, NULL), 0);
	assert_int_not_equal(tdxr_log_parse("xml", NULL, &fmt, &lvl, NULL), 0);
	tdxr_log_setup(fmt, lvl, f);
	TDXR_INFO("test", "dropped");
	TDXR_WARN("test", "quote \"q\"\n");
	fflush(f);
	assert_null(strstr(buf, "dropped"));
	assert_non_null(strstr(buf, "\"level\":\"warn\""));
	assert_non_null(strstr(buf, "quote \\\"q\\\"\\u000a"));
	tdxr_log_setup(TDXR_LOG_TEXT, TDXR_LOG_INFO, NULL);
	fclose(f);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(err_set_records_code_and_truncates_long_messages),
		cmocka_unit_test(buf_refuses_appends_past_its_cap_and_keeps_content),
		cmocka_unit_test(cursor_getters_fail_on_short_input_without_moving),
		cmocka_unit_test(integers_are_parsed_strictly),
		cmocka_unit_test(hex_strict_and_text_forms),
		cmocka_unit_test(rfc3339_times_parse_and_reject_offsets),
		cmocka_unit_test(files_are_read_with_a_cap_and_written_atomically),
		cmocka_unit_test(secrets_require_private_files_and_leave_the_environment),
		cmocka_unit_test(log_json_lines_escape_and_filter_by_level),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
