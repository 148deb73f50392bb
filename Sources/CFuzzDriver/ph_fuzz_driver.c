#define _GNU_SOURCE
#include "ph_fuzz_driver.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* `make fuzz` compiles with -DPH_FUZZ_LIBFUZZER and links libFuzzer's LLVMFuzzerRunDriver. (A weak
 * fallback beside it would not do: a static archive member is only pulled in for an undefined
 * symbol, so the weak definition would win and the fuzzer would silently only replay.) */
#ifdef PH_FUZZ_LIBFUZZER
int ph_fuzz_is_libfuzzer(void) { return 1; }
#else

/* Reads one file and runs the callback on its bytes. Returns 0, or 1 if the file is unreadable. */
static int replay_file(const char *path, ph_fuzz_callback callback) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "peerhost-fuzz: cannot read %s\n", path); return 1; }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) { cap *= 2; buf = realloc(buf, cap); }
    }
    fclose(f);
    if (!buf) return 1;
    callback(buf, len);
    free(buf);
    return 0;
}

static int replay_path(const char *path, ph_fuzz_callback callback, int *count) {
    struct stat st;
    if (stat(path, &st) != 0) { fprintf(stderr, "peerhost-fuzz: no such input %s\n", path); return 1; }
    if (!S_ISDIR(st.st_mode)) { (*count)++; return replay_file(path, callback); }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);   /* sorted: a failing input is easy to name */
    if (n < 0) return 1;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, names[i]->d_name);
            failed |= replay_path(child, callback, count);
        }
        free(names[i]);
    }
    free(names);
    return failed;
}

int LLVMFuzzerRunDriver(int *argc, char ***argv, ph_fuzz_callback callback) {
    int failed = 0, count = 0;
    for (int i = 1; i < *argc; i++) {
        const char *arg = (*argv)[i];
        if (arg[0] == '-') continue;   /* libFuzzer flags mean nothing to the replayer */
        failed |= replay_path(arg, callback, &count);
    }
    fprintf(stderr, "peerhost-fuzz: replayed %d inputs (built without libFuzzer: no mutation)\n", count);
    return failed;
}

int ph_fuzz_is_libfuzzer(void) { return 0; }
#endif
