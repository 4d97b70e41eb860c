/*
 * tu_server.h - starts a Python test server for a unit test (header-only, static).
 *
 * Contract every such server keeps (tests/integration/NAME_server.py,
 * tests/unit/http_test_server.py): it binds 127.0.0.1 on a free port, prints
 * "PORT <n>\n" on stdout once listening, and with --watch-stdin exits when its
 * stdin reaches EOF, so a test that dies never leaves it behind. tu_server_start
 * runs `python3 SCRIPT ARGS... --watch-stdin`, waits (bounded) for that line and
 * fills base with "http://127.0.0.1:<port>". It returns -1 when python3 is not on
 * PATH (the caller prints nothing more and calls skip()); any other failure fails
 * the test. tu_server_get speaks raw HTTP/1.0 to the server (control paths), so a
 * test of an HTTP client never depends on the client under test.
 */
#ifndef TDXR_TESTS_TU_SERVER_H
#define TDXR_TESTS_TU_SERVER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tu_python.h"

#define TU_SERVER_ARGS_MAX 30

struct tu_server {
	pid_t pid;
	int in_fd; /* its stdin: closing it stops the server */
	int port;
	char base[64];
};

static inline int tu_server_start(struct tu_server *s, const char *script, const char *const *args)
{
	const char *argv[TU_SERVER_ARGS_MAX + 4];
	int in[2], out[2];
	size_t n = 0, i, ll = 0;
	char line[64];
	unsigned long port = 0;
	char *end = NULL;

	memset(s, 0, sizeof(*s));
	s->pid = -1;
	s->in_fd = -1;
	if (!tu_have_python3()) {
		print_message("skip: python3 not found; %s needs it\n", script);
		return -1;
	}
	argv[n++] = "python3";
	argv[n++] = script;
	for (i = 0; args != NULL && args[i] != NULL; i++) {
		if (n >= TU_SERVER_ARGS_MAX)
			fail_msg("tu_server_start: too many arguments for %s", script);
		argv[n++] = args[i];
	}
	argv[n++] = "--watch-stdin";
	argv[n] = NULL;
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
		fail_msg("tu_server_start: pipe2 failed");
	s->pid = fork();
	if (s->pid < 0)
		fail_msg("tu_server_start: fork failed");
	if (s->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s->in_fd = in[1];
	while (ll < sizeof(line) - 1) {
		struct pollfd pfd = { out[0], POLLIN, 0 };

		if (poll(&pfd, 1, 10000) <= 0 || read(out[0], line + ll, 1) != 1 || line[ll] == '\n')
			break;
		ll++;
	}
	line[ll] = '\0';
	close(out[0]);
	if (strncmp(line, "PORT ", 5) == 0)
		port = strtoul(line + 5, &end, 10);
	if (port == 0 || port > 65535 || end == NULL || *end != '\0')
		fail_msg("%s did not start (got '%s')", script, line);
	s->port = (int)port;
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
	return 0;
}

static inline void tu_server_stop(struct tu_server *s)
{
	int st;

	if (s->pid <= 0)
		return;
	close(s->in_fd);
	kill(s->pid, SIGTERM);
	waitpid(s->pid, &st, 0);
	s->pid = -1;
	s->in_fd = -1;
}

/* GET path over a raw HTTP/1.0 socket; returns the body (malloc'd, at most 1 MiB) or NULL. */
static inline char *tu_server_get(const struct tu_server *s, const char *path)
{
	struct sockaddr_in a;
	char req[1024], chunk[4096];
	char *all = NULL, *sep, *body = NULL;
	size_t len = 0;
	ssize_t r;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path) >=
	        sizeof(req) ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return NULL;
	}
	while ((r = read(fd, chunk, sizeof(chunk))) > 0 && len + (size_t)r <= (1u << 20)) {
		char *n = realloc(all, len + (size_t)r + 1);

		if (n == NULL)
			break;
		all = n;
		memcpy(all + len, chunk, (size_t)r);
		len += (size_t)r;
		all[len] = '\0';
	}
	close(fd);
	if (all != NULL && (sep = strstr(all, "\r\n\r\n")) != NULL)
		body = strdup(sep + 4);
	free(all);
	return body;
}

#endif
