/* LD_PRELOAD shim for bench/instructions.py only: redis-server reads its hash seeds (and run id)
 * from /dev/urandom with fopen. Here that file reads as a fixed byte pattern, so every run gets
 * the same seeds, hence the same dict bucket chains (the command table, the keyspace), hence
 * the same instruction counts. Never use it for anything but counting instructions. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static unsigned char pattern[4096];

static FILE *fixed(void) {
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i * 131u + 7u);
    return fmemopen(pattern, sizeof pattern, "r");
}

static int is_urandom(const char *path) {
    return path && (strcmp(path, "/dev/urandom") == 0 || strcmp(path, "/dev/random") == 0);
}

FILE *fopen(const char *path, const char *mode) {
    static FILE *(*real)(const char *, const char *);
    if (is_urandom(path))
        return fixed();
    if (!real)
        real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
    return real ? real(path, mode) : NULL;
}

FILE *fopen64(const char *path, const char *mode) {
    static FILE *(*real)(const char *, const char *);
    if (is_urandom(path))
        return fixed();
    if (!real)
        real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen64");
    return real ? real(path, mode) : NULL;
}
