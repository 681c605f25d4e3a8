/* zgrad among C tools: `make install`'s files (scripts/install) in a
 * scratch prefix; a CMake project that finds them with find_package(zgrad)
 * and links the shared and the static library (and pkg-config's view);
 * the man page, which man renders without warnings and which describes
 * every option the commands' --help prints; the bash completion, sourced
 * from the prefix, completing commands, options and their values. */
#include "harness.h"

#include <libgen.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char *root;
static char prefix[512], build[512];

__attribute__((destructor)) static void remove_root(void) {
    if (root) zgt_remove_dir(root);
}

/* Runs cmd with sh (stdout and stderr into out): its exit status. */
static int sh(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    size_t len = 0, got;
    char buf[4096];
    if (!p) return -1;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0)
        for (size_t i = 0; i < got && len + 1 < n; i++) out[len++] = buf[i];
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool exists(const char *dir, const char *file) {
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return stat(p, &st) == 0;
}

/* This binary's build directory, installed once into a scratch prefix. */
static bool installed(void) {
    static int state;
    if (state) return state > 0;
    state = -1;
    const char *self = zgt_self_exe();
    if (!self || !(root = zgt_temp_dir())) return false;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", self);
    snprintf(build, sizeof build, "%s", dirname(dirname(copy)));
    snprintf(prefix, sizeof prefix, "%s/prefix", root);
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "scripts/install '%s' '%s' 2>&1", build, prefix);
    int rc = sh(cmd, out, sizeof out);
    if (rc != 0) zgt_fail(__FILE__, __LINE__, "%s: exit %d: %s", cmd, rc, out);
    else state = 1;
    return state > 0;
}

TEST(install_puts_every_file_under_the_prefix) {
    if (!installed()) return;
    const char *files[] = {"include/zgrad.h",
                           "lib/libzgrad.a",
                           "lib/libzgrad.so",
                           "bin/zgrad",
                           "lib/pkgconfig/zgrad.pc",
                           "lib/cmake/zgrad/zgradConfig.cmake",
                           "lib/cmake/zgrad/zgradConfigVersion.cmake",
                           "share/man/man1/zgrad.1",
                           "share/bash-completion/completions/zgrad"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!exists(prefix, files[i])) zgt_fail(__FILE__, __LINE__, "%s/%s was not installed", prefix, files[i]);
    char cmd[1024], out[1024];
    snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs zgrad", prefix);
    CHECK(sh(cmd, out, sizeof out) == 0);
    char want[1200];
    snprintf(want, sizeof want, "-I%s/include -L%s/lib -lzgrad", prefix, prefix);
    if (!strstr(out, want)) zgt_fail(__FILE__, __LINE__, "pkg-config says '%s', expected '%s'", out, want);
}

static const char *const CONSUMER_CMAKE =
    "cmake_minimum_required(VERSION 3.13)\n"
    "project(consumer C)\n"
    "find_package(zgrad 0.2 QUIET)\n"
    "if(zgrad_FOUND)\n"
    "  message(FATAL_ERROR \"find_package(zgrad 0.2) accepted ${zgrad_VERSION}\")\n"
    "endif()\n"
    "find_package(zgrad " ZG_VERSION " REQUIRED)\n"
    "add_executable(consumer main.c)\n"
    "target_link_libraries(consumer PRIVATE zgrad::zgrad)\n"
    "add_executable(consumer_static main.c)\n"
    "target_link_libraries(consumer_static PRIVATE zgrad::zgrad_static)\n";

static const char *const CONSUMER_MAIN =
    "#include <zgrad.h>\n"
    "#include <stdio.h>\n"
    "int main(void) {\n"
    "    float v[3] = {-1.0f, 2.0f, 3.0f};\n"
    "    int64_t n = 3;\n"
    "    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, v, &n, 1);\n"
    "    printf(\"zgrad %s: relu sum %g\\n\", ZG_VERSION, (double)zg_tensor_item(zg_sum(zg_relu(x))));\n"
    "    zg_tensor_free(x);\n"
    "    zg_arena_reset();\n"
    "    return 0;\n"
    "}\n";

static bool write_file(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    bool ok = f && fputs(text, f) >= 0;
    return f && fclose(f) == 0 && ok;
}

/* A project outside the tree, configured with the prefix on
 * CMAKE_PREFIX_PATH; under the sanitizer build it is compiled with the
 * same sanitizers as the library it links. */
TEST(cmake_project_finds_and_links_zgrad) {
    if (!installed()) return;
    char src[600], bin[600], cmd[4096], out[16384];
    snprintf(src, sizeof src, "%s/consumer", root);
    snprintf(bin, sizeof bin, "%s/consumer/b", root);
    CHECK(mkdir(src, 0755) == 0);
    CHECK(write_file(src, "CMakeLists.txt", CONSUMER_CMAKE) && write_file(src, "main.c", CONSUMER_MAIN));
    const bool san = exists(build, ".sanitized");
    snprintf(cmd, sizeof cmd,
             "cmake -S '%s' -B '%s' -DCMAKE_PREFIX_PATH='%s' %s 2>&1 && cmake --build '%s' 2>&1 && '%s/consumer' && "
             "'%s/consumer_static'",
             src, bin, prefix,
             san ? "-DCMAKE_C_COMPILER=clang '-DCMAKE_C_FLAGS=-fsanitize=address,undefined' "
                   "'-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined'"
                 : "",
             bin, bin, bin);
    int rc = sh(cmd, out, sizeof out);
    if (rc != 0) zgt_fail(__FILE__, __LINE__, "the consumer: exit %d:\n%s", rc, out);
    const char *first = strstr(out, "zgrad " ZG_VERSION ": relu sum 5\n");
    CHECK(first && strstr(first + 1, "zgrad " ZG_VERSION ": relu sum 5\n")); /* shared, then static */
}

/* The options of `zgrad CMD --help` (rows starting "  --"), each checked
 * against the man page's source, where '-' is written "\-". */
static void check_options_described(const char *cmdname, const char *man) {
    char cmd[1024], help[16384];
    snprintf(cmd, sizeof cmd, "'%s/zgrad' %s --help", build, cmdname);
    CHECK(sh(cmd, help, sizeof help) == 0);
    int n = 0;
    for (char *line = strstr(help, "\n  --"); line; line = strstr(line + 1, "\n  --")) {
        char opt[64] = "", esc[160] = "";
        sscanf(line + 3, "%63[a-z0-9-]", opt);
        size_t k = 0;
        for (const char *c = opt; *c && k + 3 < sizeof esc; c++) {
            if (*c == '-') esc[k++] = '\\';
            esc[k++] = *c;
        }
        esc[k] = '\0';
        n++;
        if (!strstr(man, esc)) zgt_fail(__FILE__, __LINE__, "man/zgrad.1 does not describe `zgrad %s %s`", cmdname, opt);
    }
    CHECK(n > 0);
}

TEST(man_page_renders_and_describes_every_option) {
    if (!installed()) return;
    char out[65536], cmd[1024];
    /* --warnings: groff's complaints go to stderr, which is kept apart */
    int rc = sh("MANWIDTH=100 man --warnings -l man/zgrad.1 2>/dev/null", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "ZGRAD(1)") && strstr(out, "zgrad " ZG_VERSION) && strstr(out, "EXIT STATUS"));
    char warnings[4096];
    CHECK(sh("man --warnings -l man/zgrad.1 2>&1 >/dev/null", warnings, sizeof warnings) == 0);
    if (warnings[0]) zgt_fail(__FILE__, __LINE__, "man warns about man/zgrad.1:\n%s", warnings);
    /* `man zgrad` finds the installed page */
    snprintf(cmd, sizeof cmd, "MANWIDTH=100 man -M '%s/share/man' zgrad 2>&1", prefix);
    CHECK(sh(cmd, out, sizeof out) == 0 && strstr(out, "zgrad export --onnx"));
    char *man = zgt_slurp("man/zgrad.1", NULL);
    CHECK_PTR(man);
    if (!man) return;
    const char *cmds[] = {"train", "eval", "predict", "sample", "summary", "export"};
    for (int i = 0; i < (int)(sizeof cmds / sizeof cmds[0]); i++) check_options_described(cmds[i], man);
    free(man);
}

/* What the installed completion offers for the words (the last one is the
 * word being completed), one line. */
static void complete(const char *words, char *out, size_t n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "bash --norc --noprofile -c 'source \"%s/share/bash-completion/completions/zgrad\"; "
             "complete -p zgrad >/dev/null || exit 9; COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
             "_zgrad \"%s/bin/zgrad\"; echo \"${COMPREPLY[*]}\"' 2>&1",
             prefix, words, prefix);
    int rc = sh(cmd, out, n);
    if (rc != 0) zgt_fail(__FILE__, __LINE__, "completing (%s): exit %d: %s", words, rc, out);
    out[strcspn(out, "\n")] = '\0';
}

#define COMPLETES(words, want)                                                                             \
    do {                                                                                                   \
        char got[4096];                                                                                    \
        complete(words, got, sizeof got);                                                                  \
        if (strcmp(got, want))                                                                             \
            zgt_fail(__FILE__, __LINE__, "zgrad %s<TAB> offers '%s', expected '%s'", words, got, want);    \
    } while (0)

TEST(bash_completion_completes_commands_options_and_values) {
    if (!installed()) return;
    char dirs[600], sub[700];
    snprintf(dirs, sizeof dirs, "%s/runs", root);
    snprintf(sub, sizeof sub, "%s/a", dirs);
    CHECK(mkdir(dirs, 0755) == 0 && mkdir(sub, 0755) == 0);
    char words[1024], want[1024];
    COMPLETES("zgrad \"\"", "train eval predict sample summary export --help --version");
    COMPLETES("zgrad ex", "export");
    COMPLETES("zgrad train --mo", "--model --model-file --momentum");
    COMPLETES("zgrad train --model \"\"", "cnn mlp gpt");
    COMPLETES("zgrad train --optimizer ada", "adam adamw adagrad");
    COMPLETES("zgrad train --amp f", "fp16");
    COMPLETES("zgrad train --progress \"\"", "auto bar lines off");
    COMPLETES("zgrad train --model gpt --vocab \"\"", "char byte");
    COMPLETES("zgrad train --epochs \"\"", "");
    COMPLETES("zgrad export --", "--onnx --help");
    COMPLETES("zgrad sample --te", "--temperature");
    snprintf(words, sizeof words, "zgrad train --out %s/", dirs);
    snprintf(want, sizeof want, "%s/a", dirs);
    COMPLETES(words, want);
    snprintf(words, sizeof words, "zgrad export --onnx m.onnx %s/", dirs);
    COMPLETES(words, want);
}
