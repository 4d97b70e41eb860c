/*
 * secret.c - credential storage. Each secret gets its own anonymous mapping so
 * it can be marked MADV_DONTDUMP and wiped as a whole; mappings are page-sized,
 * which is fine for the handful of secrets a process holds.
 */
#include "common/secret.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct tdxr_secret {
	size_t len;
	size_t maplen;
	char bytes[]; /* len bytes + NUL */
};

struct tdxr_secret *tdxr_secret_new(const void *p, size_t n)
{
	size_t need, page = (size_t)sysconf(_SC_PAGESIZE), maplen;
	struct tdxr_secret *s;

	if (n > (1u << 20))
		return NULL;
	need = sizeof(*s) + n + 1;
	maplen = (need + page - 1) / page * page;
	s = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	(void)madvise(s, maplen, MADV_DONTDUMP);
	s->len = n;
	s->maplen = maplen;
	if (n)
		memcpy(s->bytes, p, n);
	s->bytes[n] = '\0';
	return s;
}

int tdxr_secret_from_file(const char *path, struct tdxr_secret **out, struct tdxr_err *err)
{
	struct stat st;
	uint8_t *data = NULL;
	size_t len = 0;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return tdxr_err_set(err, TDXR_EIO, "cannot open secret file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return tdxr_err_set(err, TDXR_EINVAL, "secret file %s is not a regular file", path);
	}
	close(fd);
	if (st.st_mode & 077)
		return tdxr_err_set(
		    err, TDXR_EAUTH,
		    "secret file %s has mode %03o; it must not be readable by group or others (chmod 600 %s)",
		    path, (unsigned)(st.st_mode & 0777), path);
	rc = tdxr_file_read(path, 1u << 20, &data, &len, err);
	if (rc)
		return rc;
	if (len && data[len - 1] == '\n')
		len--;
	if (len && data[len - 1] == '\r')
		len--;
	if (memchr(data, '\0', len)) {
		OPENSSL_cleanse(data, len);
		free(data);
		return tdxr_err_set(err, TDXR_EINVAL, "secret file %s contains a NUL byte", path);
	}
	*out = tdxr_secret_new(data, len);
	OPENSSL_cleanse(data, len);
	free(data);
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	return 0;
}

int tdxr_secret_from_env(const char *name, struct tdxr_secret **out, struct tdxr_err *err)
{
	const char *v = getenv(name);

	*out = NULL;
	if (v == NULL || *v == '\0')
		return tdxr_err_set(err, TDXR_ENOTFOUND, "environment variable %s is not set", name);
	*out = tdxr_secret_new(v, strlen(v));
	if (*out == NULL)
		return tdxr_err_set(err, TDXR_ENOMEM, "out of memory");
	unsetenv(name);
	return 0;
}

const char *tdxr_secret_str(const struct tdxr_secret *s)
{
	return s ? s->bytes : "";
}

size_t tdxr_secret_len(const struct tdxr_secret *s)
{
	return s ? s->len : 0;
}

void tdxr_secret_free(struct tdxr_secret *s)
{
	size_t maplen;

	if (s == NULL)
		return;
	maplen = s->maplen;
	OPENSSL_cleanse(s, maplen);
	munmap(s, maplen);
}

void tdxr_secret_harden_process(void)
{
	struct rlimit rl = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
