/* Scratch directories for tests that write files, and files read whole. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *zgt_temp_dir(void) {
    static char dirs[16][64];
    static int next;
    char *d = dirs[next++ % 16];
    snprintf(d, 64, "/tmp/zgt_XXXXXX");
    if (!mkdtemp(d)) {
        zgt_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        return NULL;
    }
    return d;
}

void zgt_remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        /* lstat: a symlink goes itself, never what it points to */
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) zgt_remove_dir(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

char *zgt_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (s = malloc((size_t)n + 1)) != NULL &&
        fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = '\0';
    if (s && len) *len = (size_t)n;
    fclose(f);
    return s;
}
