/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput() over saved
 * inputs, without libFuzzer, so any compiler with the sanitizers can replay
 * the corpus in scripts/test. Arguments are files or directories (each
 * regular file directly inside one is an input, in name order so a failure
 * is reproducible). Each input is copied into an exact-size heap block, as
 * libFuzzer does, so a read past its end is caught.
 * A failing input aborts (its name was printed first); exit status 0 means
 * every input ran, 1 a usage or I/O error. */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define REPLAY_INPUT_MAX (16 * 1024 * 1024)

static int replay_count;

/* Reads path whole into a fresh block of exactly its size. */
static int
replay_file(const char *path)
{
	struct stat st;
	uint8_t *data;
	size_t n;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	if (st.st_size > REPLAY_INPUT_MAX) {
		fprintf(stderr, "replay: %s: larger than %d bytes\n", path, REPLAY_INPUT_MAX);
		fclose(f);
		return -1;
	}
	n = (size_t)st.st_size;
	if ((data = malloc(n > 0 ? n : 1)) == NULL || fread(data, 1, n, f) != n) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		free(data);
		fclose(f);
		return -1;
	}
	fclose(f);
	/* Named before running, so a crash report says which input it was. */
	fprintf(stderr, "replay: %s\n", path);
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	replay_count++;
	return 0;
}

static int
replay_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
replay_dir(const char *dir)
{
	struct dirent *de;
	struct stat st;
	char **names = NULL, **grown, path[4096];
	size_t n = 0, cap = 0, i;
	int rc = 0;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((grown = realloc(names, cap * sizeof(*names))) == NULL) {
				rc = -1;
				break;
			}
			names = grown;
		}
		if ((names[n] = strdup(de->d_name)) == NULL) {
			rc = -1;
			break;
		}
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), replay_name_cmp);
	for (i = 0; i < n; i++) {
		if (rc == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
			if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
				rc = replay_file(path);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	struct stat st;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s file-or-directory...\n", argv[0]);
		return 1;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == -1) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if ((S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i])) == -1)
			return 1;
	}
	fprintf(stderr, "replay: %d inputs, no failure\n", replay_count);
	return 0;
}
