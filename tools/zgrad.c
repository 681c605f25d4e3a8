/* zgrad command-line tool. */
#include <stdio.h>
#include <string.h>

#include "zgrad.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: zgrad [--version] [--help] <command> [options]\n"
            "\n"
            "zgrad trains neural networks in C with PyTorch's training semantics.\n"
            "\n"
            "options:\n"
            "  --version   print the version and exit\n"
            "  --help      print this help and exit\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("zgrad %s\n", ZG_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "zgrad: unknown command or option '%s' (see zgrad --help)\n", argv[1]);
    return 2;
}
