/*
 * replay_main.c - runs a libFuzzer target over files without libFuzzer, so
 * ctest replays each target's corpus (and any files given) under the normal
 * (sanitized) build. Arguments are files or directories of files.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	uint8_t *d = NULL;
	size_t n = 0;

	if (tdxr_file_read(path, 16u << 20, &d, &n, NULL) != 0) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		return 1;
	}
	LLVMFuzzerTestOneInput(d, n);
	free(d);
	return 0;
}

static int run_path(const char *path, int *count)
{
	struct stat st;
	DIR *dir;
	struct dirent *de;
	char sub[4096];
	int rc = 0;

	if (stat(path, &st) != 0)
		return 0; /* an absent corpus directory is an empty corpus */
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	dir = opendir(path);
	if (dir == NULL)
		return 1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= sizeof(sub))
			continue;
		rc |= run_path(sub, count);
	}
	closedir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	int i, rc = 0, count = 0;

	LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
	for (i = 1; i < argc; i++)
		rc |= run_path(argv[i], &count);
	printf("replayed %d inputs\n", count);
	return rc;
}
