/* replay.c -- run a libFuzzer harness over corpus files without libFuzzer:
 * any C compiler, any sanitizer (make fuzz-replay does it under ASan+UBSan).
 *
 *     replay DIR_OR_FILE...     prints "N passed, 0 failed" when no input crashed */

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (!f) {
        perror(path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: cannot read\n", path);
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n); /* a failure aborts the whole run */
    free(buf);
    return 1;
}

static int run(const char *path) {
    struct stat st;
    DIR *d;
    struct dirent *e;
    int total = 0;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    d = opendir(path);
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) {
        char sub[4096];
        int r;
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        r = run(sub);
        if (r < 0) {
            closedir(d);
            return -1;
        }
        total += r;
    }
    closedir(d);
    return total;
}

int main(int argc, char **argv) {
    int i, total = 0;
    for (i = 1; i < argc; i++) {
        int r = run(argv[i]);
        if (r < 0) return 2;
        total += r;
    }
    printf("%d passed, 0 failed\n", total);
    return total ? 0 : 1;
}
