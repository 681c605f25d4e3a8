/* safetensors: round trips, files written by Python (struct + json + numpy)
 * and Python reading ours, every kind of corrupt header refused with its
 * own message, atomic replacement on write, and the JSON reader itself. */
#include "harness.h"
#include "io/io_internal.h"
#include "util/json.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */


/* Number of entries in dir whose name contains `part`. */
static int count_entries(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part)) n++;
    closedir(d);
    return n;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) zgt_fail(__FILE__, __LINE__, "cannot write %s", path);
    if (f) fclose(f);
}

/* A safetensors file from raw parts: the length field (hlen, or the real
 * header length when hlen is UINT64_MAX), the header text, then data_len
 * bytes of data (0, 1, 2, ...). */
static void write_st(const char *path, uint64_t hlen, const char *header, size_t data_len) {
    size_t h = strlen(header);
    if (hlen == UINT64_MAX) hlen = h;
    size_t n = 8 + h + data_len;
    unsigned char *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)i;
    write_bytes(path, b, n);
    free(b);
}

static bool same_tensor(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_dtype(a) != zg_tensor_dtype(b) || zg_tensor_ndim(a) != zg_tensor_ndim(b)) return false;
    for (int i = 0; i < zg_tensor_ndim(a); i++)
        if (zg_tensor_shape(a)[i] != zg_tensor_shape(b)[i]) return false;
    size_t es = zg_tensor_dtype(a) == ZG_INT64 ? 8 : 4;
    const void *pa = zg_tensor_dtype(a) == ZG_INT64 ? (void *)zg_tensor_data_i64((zg_tensor *)a)
                                                    : (void *)zg_tensor_data((zg_tensor *)a);
    const void *pb = zg_tensor_dtype(b) == ZG_INT64 ? (void *)zg_tensor_data_i64((zg_tensor *)b)
                                                    : (void *)zg_tensor_data((zg_tensor *)b);
    return memcmp(pa, pb, (size_t)zg_tensor_numel(a) * es) == 0;
}

/* The tensors of the round-trip tests: F32 0-dim and 1-D..4-D, I64, an
 * empty tensor. */
#define N_RT 7
static const char *rt_names[N_RT] = {"scalar", "vec", "layer.weight", "cube", "four_d", "labels", "empty"};

static void make_rt(zg_tensor **t) {
    zg_manual_seed(5);
    t[0] = zg_scalar(-3.25f);
    int64_t s1[1] = {5}, s2[2] = {3, 4}, s3[3] = {2, 1, 3}, s4[4] = {2, 2, 1, 3}, se[2] = {0, 3};
    t[1] = zg_randn(s1, 1);
    t[2] = zg_randn(s2, 2);
    t[3] = zg_randn(s3, 3);
    t[4] = zg_randn(s4, 4);
    int64_t labels[4] = {0, -7, (int64_t)1 << 40, INT64_MIN};
    int64_t sl[1] = {4};
    t[5] = zg_tensor_from_data(ZG_INT64, labels, sl, 1);
    t[6] = zg_zeros(se, 2);
}

static void free_all(zg_tensor **t, int n) {
    for (int i = 0; i < n; i++) zg_tensor_free(t[i]);
}

static const char *meta_k[3] = {"format", "note", "unicode"};
static const char *meta_v[3] = {"pt", "quote \" backslash \\ newline \n tab \t ctrl \x01 end", "caf\xc3\xa9 \xf0\x9f\x98\x80"};

/* ---- round trip --------------------------------------------------------- */

TEST(st_round_trip) {
    char *dir = zgt_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    zg_tensor *t[N_RT];
    make_rt(t);
    CHECK_OK(zg_safetensors_write(path, t, rt_names, N_RT, meta_k, meta_v, 3));
    CHECK(count_entries(dir, ".tmp.") == 0);

    /* The header is padded so that the data starts 8-byte aligned. */
    size_t len;
    char *raw = read_all(path, &len);
    CHECK(raw && len > 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)raw[i];
    CHECK(hlen % 8 == 0);
    CHECK(raw[8] == '{');
    size_t data = 4 * (1 + 5 + 12 + 6 + 12) + 8 * 4;
    CHECK(len == 8 + hlen + data);
    free(raw);

    zg_safetensors *st = zg_safetensors_read(path);
    CHECK_PTR(st);
    if (st) {
        CHECK(zg_safetensors_count(st) == N_RT);
        for (int i = 0; i < N_RT; i++) {
            CHECK(strcmp(zg_safetensors_name(st, i), rt_names[i]) == 0);
            zg_tensor *r = zg_safetensors_get(st, rt_names[i]);
            CHECK_PTR(r);
            CHECK(same_tensor(r, t[i]));
            CHECK(zg_tensor_is_persistent(r));
            CHECK(strcmp(zg_tensor_name(r), rt_names[i]) == 0);
        }
        CHECK(zg_tensor_ndim(zg_safetensors_get(st, "scalar")) == 0);
        CHECK(zg_tensor_get(zg_safetensors_get(st, "scalar"), 0) == -3.25f);
        CHECK(zg_tensor_data_i64(zg_safetensors_get(st, "labels"))[3] == INT64_MIN);
        CHECK(zg_tensor_numel(zg_safetensors_get(st, "empty")) == 0);
        for (int i = 0; i < 3; i++) {
            const char *v = zg_safetensors_metadata(st, meta_k[i]);
            CHECK(v && strcmp(v, meta_v[i]) == 0);
        }
        CHECK(zg_safetensors_metadata(st, "absent") == NULL);
        CHECK_NULL_ERR(zg_safetensors_get(st, "nope"), "no tensor 'nope'");
        CHECK_NULL_ERR(zg_safetensors_name(st, N_RT), "out of range");
        CHECK_NULL_ERR(zg_safetensors_name(st, -1), "out of range");
        zg_safetensors_free(st);
    }

    /* No tensors and no metadata: "{}" padded. */
    CHECK_OK(zg_safetensors_write(path, NULL, NULL, 0, NULL, NULL, 0));
    st = zg_safetensors_read(path);
    CHECK_PTR(st);
    CHECK(zg_safetensors_count(st) == 0);
    zg_safetensors_free(st);
    raw = read_all(path, &len);
    CHECK(raw && len == 16 && memcmp(raw + 8, "{}      ", 8) == 0);
    free(raw);

    /* A view with an offset writes its own elements. */
    zg_tensor *rows = zg_slice(t[2], 1, 3);
    CHECK_PTR(rows);
    if (rows) {
        const char *nm[1] = {"rows"};
        CHECK_OK(zg_safetensors_write(path, &rows, nm, 1, NULL, NULL, 0));
        st = zg_safetensors_read(path);
        CHECK_PTR(st);
        if (st) {
            CHECK_TENSOR_NEAR(zg_safetensors_get(st, "rows"), rows, 0, 0);
            zg_safetensors_free(st);
        }
    }
    free_all(t, N_RT);
    remove(path);
    zgt_remove_dir(dir);
}

TEST(st_write_errors) {
    char *dir = zgt_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    zg_tensor *t[2] = {zg_scalar(1), zg_scalar(2)};
    const char *ok[2] = {"a", "b"}, *empty[2] = {"a", ""}, *nul[2] = {NULL, "b"}, *dup[2] = {"a", "a"};
    const char *reserved[2] = {"a", "__metadata__"}, *bad_utf8[2] = {"a", "\xff"};
    CHECK_ERR(zg_safetensors_write(path, t, empty, 2, NULL, NULL, 0), "name 1 is NULL or empty");
    CHECK_ERR(zg_safetensors_write(path, t, nul, 2, NULL, NULL, 0), "name 0 is NULL or empty");
    CHECK_ERR(zg_safetensors_write(path, t, dup, 2, NULL, NULL, 0), "tensor name 'a' appears twice");
    CHECK_ERR(zg_safetensors_write(path, t, reserved, 2, NULL, NULL, 0), "reserved");
    CHECK_ERR(zg_safetensors_write(path, t, bad_utf8, 2, NULL, NULL, 0), "UTF-8");
    zg_tensor *withnull[2] = {t[0], NULL};
    CHECK_ERR(zg_safetensors_write(path, withnull, ok, 2, NULL, NULL, 0), "tensor 1 ('b') is NULL");
    CHECK_ERR(zg_safetensors_write(path, t, ok, -1, NULL, NULL, 0), "negative");
    CHECK_ERR(zg_safetensors_write(path, NULL, ok, 2, NULL, NULL, 0), "NULL");
    CHECK_ERR(zg_safetensors_write(NULL, t, ok, 2, NULL, NULL, 0), "path");
    const char *mk[2] = {"k", "k"}, *mv[2] = {"1", "2"}, *mvn[2] = {"1", NULL};
    CHECK_ERR(zg_safetensors_write(path, t, ok, 2, mk, mv, 2), "metadata key 'k' appears twice");
    CHECK_ERR(zg_safetensors_write(path, t, ok, 2, mk, mvn, 2), "metadata entry 1 is NULL");
    CHECK(count_entries(dir, "") == 0); /* nothing was created */
    free_all(t, 2);
    zgt_remove_dir(dir);
}

/* ---- Python interoperability -------------------------------------------- */

/* Reads a safetensors file with struct + json + numpy, checking the
 * standard's rules on the way, then writes its tensors (plus two of its own)
 * to a second file with Python's json.dumps (ASCII escapes, spaces after
 * separators), header entries in reverse order, data in name order, no
 * padding. */
static const char *py_script =
    "import json, struct, sys\n"
    "import numpy as np\n"
    "src, dst = sys.argv[1], sys.argv[2]\n"
    "raw = open(src, 'rb').read()\n"
    "n = struct.unpack('<Q', raw[:8])[0]\n"
    "assert n % 8 == 0 and 8 + n <= len(raw), 'header length'\n"
    "hdr = raw[8:8 + n]\n"
    "assert hdr[:1] == b'{', 'header start'\n"
    "h = json.loads(hdr.decode('utf-8'))\n"
    "data = raw[8 + n:]\n"
    "meta = h.pop('__metadata__', None)\n"
    "assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())\n"
    "dt = {'F32': np.dtype('<f4'), 'I64': np.dtype('<i8')}\n"
    "arrays, spans = {}, []\n"
    "for name, info in h.items():\n"
    "    assert set(info) == {'dtype', 'shape', 'data_offsets'}, info\n"
    "    b, e = info['data_offsets']\n"
    "    t = dt[info['dtype']]\n"
    "    count = int(np.prod(info['shape'], dtype=np.int64))\n"
    "    assert e - b == count * t.itemsize, name\n"
    "    arrays[name] = np.frombuffer(data[b:e], dtype=t).reshape(info['shape'])\n"
    "    spans.append((b, e))\n"
    "pos = 0\n"
    "for b, e in sorted(spans):\n"
    "    assert b == pos, 'gap or overlap'\n"
    "    pos = e\n"
    "assert pos == len(data), 'trailing data'\n"
    "assert arrays['scalar'].shape == () and arrays['scalar'] == np.float32(-3.25)\n"
    "assert arrays['labels'].tolist() == [0, -7, 1 << 40, -(1 << 63)]\n"
    "assert arrays['four_d'].shape == (2, 2, 1, 3)\n"
    "assert meta['format'] == 'pt' and meta['unicode'] == 'caf\\u00e9 \\U0001F600'\n"
    "arrays['py.f32'] = (np.arange(6, dtype=np.float32) * np.float32(0.5) - 1).reshape(2, 3)\n"
    "arrays['py.i64'] = np.array([3, -(1 << 62), 42], dtype=np.int64)\n"
    "out, off, blobs = {}, 0, []\n"
    "for name in sorted(arrays):\n"
    "    a = arrays[name]\n"
    "    code = 'F32' if a.dtype == np.float32 else 'I64'\n"
    "    out[name] = {'shape': list(a.shape), 'dtype': code, 'data_offsets': [off, off + a.nbytes]}\n"
    "    blobs.append(a.astype(a.dtype.newbyteorder('<')).tobytes())\n"
    "    off += a.nbytes\n"
    "rev = {k: out[k] for k in reversed(list(out))}\n"
    "rev['__metadata__'] = meta\n"
    "js = json.dumps(rev).encode('utf-8')\n"
    "open(dst, 'wb').write(struct.pack('<Q', len(js)) + js + b''.join(blobs))\n";

TEST(st_python_interop) {
    if (access("/usr/bin/python3", X_OK) != 0 || system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
        printf("  (st_python_interop: /usr/bin/python3 with numpy not available, skipped)\n");
        return;
    }
    char *dir = zgt_temp_dir();
    char ours[256], theirs[256], script[256], cmd[1024];
    snprintf(ours, sizeof ours, "%s/ours.safetensors", dir);
    snprintf(theirs, sizeof theirs, "%s/theirs.safetensors", dir);
    snprintf(script, sizeof script, "%s/check.py", dir);
    write_bytes(script, py_script, strlen(py_script));
    zg_tensor *t[N_RT];
    make_rt(t);
    CHECK_OK(zg_safetensors_write(ours, t, rt_names, N_RT, meta_k, meta_v, 3));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s", script, ours, theirs);
    CHECK(system(cmd) == 0); /* Python parsed our file and accepted it */

    zg_safetensors *st = zg_safetensors_read(theirs);
    CHECK_PTR(st);
    if (st) {
        CHECK(zg_safetensors_count(st) == N_RT + 2);
        /* Header order is Python's (reverse of sorted names). */
        CHECK(strcmp(zg_safetensors_name(st, 0), "vec") == 0);
        for (int i = 0; i < N_RT; i++) CHECK(same_tensor(zg_safetensors_get(st, rt_names[i]), t[i]));
        for (int i = 0; i < 3; i++) {
            const char *v = zg_safetensors_metadata(st, meta_k[i]);
            CHECK(v && strcmp(v, meta_v[i]) == 0);
        }
        const float f[6] = {-1, -0.5f, 0, 0.5f, 1, 1.5f};
        zg_tensor *pf = zg_safetensors_get(st, "py.f32");
        CHECK_VALUES(pf, f, 6, 0);
        CHECK(zg_tensor_ndim(pf) == 2 && zg_tensor_size(pf, 0) == 2 && zg_tensor_size(pf, 1) == 3);
        zg_tensor *pi = zg_safetensors_get(st, "py.i64");
        CHECK(pi && zg_tensor_dtype(pi) == ZG_INT64);
        if (pi) {
            const int64_t *v = zg_tensor_data_i64(pi);
            CHECK(v[0] == 3 && v[1] == -((int64_t)1 << 62) && v[2] == 42);
        }
        zg_safetensors_free(st);
    }
    free_all(t, N_RT);
    zgt_remove_dir(dir);
}

/* ---- corrupt files ------------------------------------------------------ */

/* One F32 [2] tensor at [0, 8): the valid base the cases below corrupt. */
#define ENT(name, dtype, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void expect_bad(const char *path, uint64_t hlen, const char *header, size_t data_len, const char *msg,
                       int line) {
    write_st(path, hlen, header, data_len);
    zg_clear_error();
    zg_safetensors *st = zg_safetensors_read(path);
    if (st) {
        zgt_fail(__FILE__, line, "read of a corrupt file succeeded (header %s)", header);
        zg_safetensors_free(st);
    } else if (!strstr(zg_last_error(), msg)) {
        zgt_fail(__FILE__, line, "error \"%s\" does not mention \"%s\"", zg_last_error(), msg);
    } else if (!strstr(zg_last_error(), path) || strncmp(zg_last_error(), "zg_safetensors_read: ", 21) != 0) {
        zgt_fail(__FILE__, line, "error \"%s\" does not name the function and the file", zg_last_error());
    }
}
#define BAD(header, data_len, msg) expect_bad(path, UINT64_MAX, header, data_len, msg, __LINE__)

TEST(st_corrupt_framing) {
    char *dir = zgt_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);

    /* The base file is valid. */
    write_st(path, UINT64_MAX, "{" ENT("a", "F32", "[2]", 0, 8) "}", 8);
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK_PTR(st);
    if (st) {
        CHECK(zg_safetensors_count(st) == 1);
        zg_safetensors_free(st);
    }

    write_bytes(path, "abcde", 5);
    CHECK_NULL_ERR(zg_safetensors_read(path), "too short");
    write_bytes(path, "", 0);
    CHECK_NULL_ERR(zg_safetensors_read(path), "file is 0 bytes");
    expect_bad(path, 1000, "{}", 0, "header length 1000 exceeds the 2 bytes", __LINE__);
    expect_bad(path, (uint64_t)1 << 60, "{}", 0, "absurd", __LINE__);
    expect_bad(path, 0, "", 0, "does not start with '{'", __LINE__);
    BAD("[1,2]", 0, "does not start with '{'");
    BAD(" {}", 0, "does not start with '{'");
    BAD("{\"a\":}", 0, "JSON error at byte 5: expected a JSON value");
    BAD("{\"a\":{\"dtype\":\"F32\",}}", 0, "JSON error");
    BAD("{\"a\" {}}", 0, "expected ':'");
    BAD("{\"a\":1,}", 0, "JSON error");
    BAD("{\"a\":tru}", 0, "JSON error");
    BAD("{\"a\":[1 2]}", 0, "expected ',' or ']'");
    BAD("{\"a\":\"x", 0, "unterminated string");
    BAD("{}}", 0, "expected the end of the JSON text");
    BAD("{} x", 0, "expected the end");
    BAD("{\"a\":01}", 0, "leading zeros");
    BAD("{\"\xc3\x28\":1}", 0, "not valid UTF-8");
    BAD("{\"a\\q\":1}", 0, "invalid escape");
    BAD("{\"a\tb\":1}", 0, "control character");
    BAD("{\"a\\ud800\":1}", 0, "surrogate");
    {
        char deep[400] = "{\"a\":";
        for (int i = 0; i < 100; i++) strcat(deep, "[");
        BAD(deep, 0, "nesting deeper");
    }
    /* Space padding after the object is allowed (writers pad to 8). */
    write_st(path, UINT64_MAX, "{" ENT("a", "F32", "[2]", 0, 8) "}   \n\t ", 8);
    st = zg_safetensors_read(path);
    CHECK_PTR(st);
    zg_safetensors_free(st);
    /* Trailing data after the last tensor. */
    BAD("{" ENT("a", "F32", "[2]", 0, 8) "}", 12, "4 trailing bytes");
    /* A directory or a missing file. */
    CHECK_NULL_ERR(zg_safetensors_read(dir), "not a regular file");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", dir);
    CHECK_NULL_ERR(zg_safetensors_read(missing), "cannot open");
    CHECK_NULL_ERR(zg_safetensors_read(NULL), "path is NULL");
    remove(path);
    zgt_remove_dir(dir);
}

TEST(st_corrupt_entries) {
    char *dir = zgt_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    BAD("{\"a\":5}", 0, "tensor 'a': entry is a number, not an object");
    BAD("{\"a\":[]}", 0, "entry is an array");
    BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'a': missing field 'shape'");
    BAD("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing field 'dtype'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing field 'data_offsets'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"foo\":1}}", 8, "unexpected field 'foo'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
        "field 'dtype' appears twice");
    BAD("{" ENT("a", "F17", "[2]", 0, 8) "}", 8, "unknown dtype 'F17'");
    BAD("{" ENT("a", "F16", "[4]", 0, 8) "}", 8, "dtype F16 is not supported");
    BAD("{" ENT("a", "BF16", "[4]", 0, 8) "}", 8, "dtype BF16 is not supported");
    BAD("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is a number, not a string");
    BAD("{" ENT("a", "F32", "2", 0, 8) "}", 8, "shape is a number, not an array");
    BAD("{" ENT("a", "F32", "[-2]", 0, 8) "}", 8, "shape entry 0 is -2, not a non-negative integer");
    BAD("{" ENT("a", "F32", "[1,2.5]", 0, 8) "}", 8, "shape entry 1 is 2.5");
    BAD("{" ENT("a", "F32", "[2e0]", 0, 8) "}", 8, "shape entry 0 is 2e0");
    BAD("{" ENT("a", "F32", "[\"2\"]", 0, 8) "}", 8, "shape entry 0 is a string");
    BAD("{" ENT("a", "F32", "[99999999999999999999]", 0, 8) "}", 8, "shape entry 0 is 99999999999999999999");
    BAD("{" ENT("a", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", 8, "9 dimensions (at most 8");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8, "two integers");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":8}}", 8, "two integers");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "not ascending");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8, "data_offsets entry 1 is 8.0");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,7]}}", 8, "data_offsets entry 0 is -1");
    BAD("{" ENT("a", "F32", "[2]", 0, 4) "}", 4, "hold 4 bytes, but F32 [2] needs 8");
    BAD("{" ENT("a", "I64", "[2]", 0, 8) "}", 8, "I64 [2] needs 16");
    BAD("{" ENT("a", "F32", "[4294967296,4294967296]", 0, 8) "}", 8, "needs more than");
    BAD("{" ENT("a", "F32", "[2]", 4, 12) "}", 8, "[4, 12] lie outside the 8-byte data section");
    BAD("{" ENT("a", "F32", "[2]", 0, 8) "," ENT("b", "F32", "[2]", 4, 12) "}", 12,
        "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
    BAD("{" ENT("a", "F32", "[2]", 0, 8) "," ENT("b", "F32", "[2]", 0, 8) "}", 8, "overlap");
    BAD("{" ENT("a", "F32", "[1]", 0, 4) "," ENT("b", "F32", "[1]", 8, 12) "}", 12,
        "gap in the data section: bytes [4, 8)");
    BAD("{" ENT("a", "F32", "[1]", 4, 8) "}", 8, "bytes [0, 4) belong to no tensor");
    BAD("{" ENT("a", "F32", "[1]", 0, 4) "," ENT("a", "F32", "[1]", 4, 8) "}", 8, "tensor 'a' appears twice");
    BAD("{\"__metadata__\":{\"k\":1}," ENT("a", "F32", "[1]", 0, 4) "}", 4,
        "__metadata__ value of 'k' is a number, not a string");
    BAD("{\"__metadata__\":[]}", 0, "__metadata__ is an array, not an object");
    BAD("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "__metadata__ key 'k' appears twice");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
    BAD("{\"a\\u0000b\":1}", 0, "contains a NUL character");
    BAD("{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "contains a NUL character");

    /* Valid edge cases: empty tensors anywhere, a 0-dim tensor, unicode
     * escapes in names, out-of-order entries. */
    write_st(path, UINT64_MAX,
             "{" ENT("z\\u00e9", "F32", "[]", 4, 8) "," ENT("e", "F32", "[0,5]", 4, 4) "," ENT("a", "F32", "[1]", 0, 4)
                 "," ENT("e2", "I64", "[0]", 8, 8) "}",
             8);
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK_PTR(st);
    if (st) {
        CHECK(zg_safetensors_count(st) == 4);
        zg_tensor *z = zg_safetensors_get(st, "z\xc3\xa9");
        CHECK(z && zg_tensor_ndim(z) == 0);
        /* Data bytes 4..7 are 4, 5, 6, 7 (write_st's pattern). */
        uint32_t bits = 4u | 5u << 8 | 6u << 16 | 7u << 24;
        float f;
        memcpy(&f, &bits, 4);
        if (z) CHECK(memcmp(zg_tensor_data(z), &f, 4) == 0);
        CHECK(zg_tensor_numel(zg_safetensors_get(st, "e")) == 0);
        CHECK(zg_tensor_dtype(zg_safetensors_get(st, "e2")) == ZG_INT64);
        zg_safetensors_free(st);
    }
    remove(path);
    zgt_remove_dir(dir);
}

/* ---- atomic write ------------------------------------------------------- */

TEST(st_atomic_write) {
    char *dir = zgt_temp_dir();
    char path[256], missing[300], subdir[300];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    zg_tensor *t[N_RT];
    make_rt(t);
    CHECK_OK(zg_safetensors_write(path, t, rt_names, N_RT, NULL, NULL, 0));
    size_t len0;
    char *before = read_all(path, &len0);

    /* Failures before any file is created. */
    zg_tensor *withnull[2] = {t[0], NULL};
    CHECK_ERR(zg_safetensors_write(path, withnull, rt_names, 2, NULL, NULL, 0), "is NULL");
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", dir);
    CHECK_ERR(zg_safetensors_write(missing, t, rt_names, N_RT, NULL, NULL, 0), "cannot create");

    /* The rename fails: the target is a directory. The temporary file goes. */
    snprintf(subdir, sizeof subdir, "%s/target", dir);
    CHECK(mkdir(subdir, 0755) == 0);
    CHECK_ERR(zg_safetensors_write(subdir, t, rt_names, N_RT, NULL, NULL, 0), "cannot rename");
    struct stat sb;
    CHECK(stat(subdir, &sb) == 0 && S_ISDIR(sb.st_mode));

    /* A write that fails half way (file size limit): the old file stays. */
    int64_t big_shape[1] = {1 << 16};
    zg_tensor *big = zg_zeros(big_shape, 1);
    const char *big_name[1] = {"big"};
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {4096, old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    int rc = zg_safetensors_write(path, &big, big_name, 1, NULL, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(rc == ZG_ERR_IO);
    CHECK(strstr(zg_last_error(), "writing") != NULL);

    size_t len1;
    char *after = read_all(path, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0);
    CHECK(count_entries(dir, ".tmp.") == 0);
    CHECK(count_entries(dir, "") == 2); /* ckpt.safetensors and target/ */
    free(after);

    /* A successful write replaces the file. */
    CHECK_OK(zg_safetensors_write(path, &big, big_name, 1, NULL, NULL, 0));
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK(st && zg_safetensors_count(st) == 1 && zg_tensor_numel(zg_safetensors_get(st, "big")) == 1 << 16);
    zg_safetensors_free(st);
    CHECK(count_entries(dir, ".tmp.") == 0);

    /* A relative path (directory "."). */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    CHECK_OK(zg_safetensors_write("rel.safetensors", t, rt_names, 1, NULL, NULL, 0));
    CHECK(chdir(cwd) == 0);
    CHECK(count_entries(dir, "rel.safetensors") == 1);

    free(before);
    zg_tensor_free(big);
    free_all(t, N_RT);
    zgt_remove_dir(dir);
}

/* ---- the JSON reader ---------------------------------------------------- */

static zg__json *parse(const char *s, char *err) {
    zg__json *v = NULL;
    err[0] = '\0';
    zg__json_parse(s, strlen(s), 1000, &v, err, 128);
    return v;
}

TEST(json_reader) {
    char err[128];
    zg__json *v = parse(" {\"n\": [0, -0, 9223372036854775807, -9223372036854775808, 9223372036854775808, 1.5e-3, "
                       "-2E+2], \"s\": \"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\", \"t\": true, "
                       "\"f\": false, \"z\": null, \"e\": {}, \"a\": [], \"n\": 1} ",
                       err);
    CHECK(v != NULL);
    if (!v) return;
    CHECK(v->type == ZG_JSON_OBJECT && v->n == 8);
    CHECK(strcmp(v->keys[0], "n") == 0 && strcmp(v->keys[7], "n") == 0); /* duplicates kept, in order */
    const zg__json *n = &v->items[0];
    CHECK(n->type == ZG_JSON_ARRAY && n->n == 7);
    CHECK(n->items[0].is_integer && n->items[0].fits_int64 && n->items[0].integer == 0);
    CHECK(n->items[1].fits_int64 && n->items[1].integer == 0);
    CHECK(n->items[2].fits_int64 && n->items[2].integer == INT64_MAX);
    CHECK(n->items[3].fits_int64 && n->items[3].integer == INT64_MIN);
    CHECK(n->items[4].is_integer && !n->items[4].fits_int64);
    CHECK(!n->items[5].is_integer && n->items[5].num_len == 6 && !strncmp(n->items[5].num_text, "1.5e-3", 6));
    CHECK(!n->items[6].is_integer);
    const zg__json *s = &v->items[1];
    CHECK(s->type == ZG_JSON_STRING);
    CHECK(strcmp(s->str, "a\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80") == 0 && s->len == 15);
    CHECK(v->items[2].type == ZG_JSON_BOOL && v->items[2].boolean);
    CHECK(v->items[3].type == ZG_JSON_BOOL && !v->items[3].boolean);
    CHECK(v->items[4].type == ZG_JSON_NULL);
    CHECK(v->items[5].type == ZG_JSON_OBJECT && v->items[5].n == 0);
    CHECK(v->items[6].type == ZG_JSON_ARRAY && v->items[6].n == 0);
    zg__json_free(v);

    v = parse("\"a\\u0000b\"", err);
    CHECK(v && v->len == 3 && strlen(v->str) == 1);
    zg__json_free(v);

    const char *bad[][2] = {
        {"", "byte 0: unexpected end of input"},
        {"-", "expected a digit"},
        {"1.", "digit after '.'"},
        {"1e", "digit in the exponent"},
        {"[1,]", "expected a JSON value"},
        {"{\"a\":1 \"b\":2}", "byte 7: expected ',' or '}'"},
        {"{1:2}", "string key"},
        {"\"\\u12g4\"", "4 hex digits"},
        {"\"\\udc00\"", "unpaired low surrogate"},
        {"\"\\ud800\\u0041\"", "not followed by a low surrogate"},
        {"\"\xe0\x80\x80\"", "not valid UTF-8"},  /* overlong */
        {"\"\xed\xa0\x80\"", "not valid UTF-8"},  /* surrogate in UTF-8 */
        {"\"\xf4\x90\x80\x80\"", "not valid UTF-8"}, /* above U+10FFFF */
        {"nul", "expected a JSON value"},
        {"\x01", "byte 0x01"},
        {"[1] [2]", "expected the end"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = parse(bad[i][0], err);
        if (v) {
            zgt_fail(__FILE__, __LINE__, "JSON '%s' parsed, expected an error", bad[i][0]);
            zg__json_free(v);
        } else if (!strstr(err, bad[i][1])) {
            zgt_fail(__FILE__, __LINE__, "JSON '%s': error \"%s\" does not mention \"%s\"", bad[i][0], err, bad[i][1]);
        }
        /* Checking without a tree finds the same error. */
        err[0] = '\0';
        if (zg__json_validate(bad[i][0], strlen(bad[i][0]), err, 128) == 0 || !strstr(err, bad[i][1]))
            zgt_fail(__FILE__, __LINE__, "validate '%s': error \"%s\"", bad[i][0], err);
    }
}

/* The tree's size is bounded by the caller; duplicate keys are found;
 * the cursor reads a document value by value. */
TEST(json_budget_duplicates_cursor) {
    char err[128];
    zg__json *v = NULL;
    const char *arr = "[1, [2, 3]]";
    CHECK(zg__json_parse(arr, strlen(arr), 3, &v, err, sizeof err) != 0 && strstr(err, "more than 3 JSON values"));
    CHECK(zg__json_parse(arr, strlen(arr), 4, &v, err, sizeof err) == 0);
    zg__json_free(v);
    const char *obj = "{\"a\":1, \"b\\u0000\":2, \"b\":3, \"c\":4, \"b\":5}";
    CHECK(zg__json_parse(obj, strlen(obj), 10, &v, err, sizeof err) == 0);
    const char *dup = NULL;
    CHECK(v && zg__json_duplicate_key(v, &dup) == 0 && dup && !strcmp(dup, "b"));
    zg__json_free(v);
    obj = "{\"a\":1, \"b\\u0000\":2, \"b\":3}";
    CHECK(zg__json_parse(obj, strlen(obj), 10, &v, err, sizeof err) == 0);
    CHECK(v && zg__json_duplicate_key(v, &dup) == 0 && !dup);
    zg__json_free(v);

    const char *doc = " {\"k\": [7, \"s\", {\"x\": [null]}], \"m\": true} ";
    CHECK(zg__json_validate(doc, strlen(doc), err, sizeof err) == 0);
    zg__json_cursor c;
    zg__jc_init(&c, doc, strlen(doc), err, sizeof err);
    bool more;
    char *key = NULL, *str = NULL;
    size_t len;
    zg__json num;
    CHECK(zg__jc_peek(&c) == ZG_JSON_OBJECT && zg__jc_enter(&c) == 0);
    CHECK(zg__jc_more(&c, &more) == 0 && more && zg__jc_key(&c, &key, &len) == 0 && !strcmp(key, "k") && len == 1);
    free(key);
    key = NULL;
    CHECK(zg__jc_peek(&c) == ZG_JSON_ARRAY && zg__jc_enter(&c) == 0);
    CHECK(zg__jc_more(&c, &more) == 0 && more && zg__jc_peek(&c) == ZG_JSON_NUMBER);
    CHECK(zg__jc_number(&c, &num) == 0 && num.fits_int64 && num.integer == 7);
    CHECK(zg__jc_more(&c, &more) == 0 && more && zg__jc_string(&c, &str, &len) == 0 && !strcmp(str, "s"));
    free(str);
    str = NULL;
    CHECK(zg__jc_more(&c, &more) == 0 && more && zg__jc_skip(&c) == 0);
    CHECK(zg__jc_more(&c, &more) == 0 && !more);
    CHECK(zg__jc_more(&c, &more) == 0 && more && zg__jc_key(&c, &key, &len) == 0 && !strcmp(key, "m"));
    free(key);
    key = NULL;
    CHECK(zg__jc_peek(&c) == ZG_JSON_BOOL && zg__jc_skip(&c) == 0);
    CHECK(zg__jc_more(&c, &more) == 0 && !more);
    /* Asked for the wrong type, the cursor says so. */
    zg__jc_init(&c, doc, strlen(doc), err, sizeof err);
    CHECK(zg__jc_string(&c, &str, &len) != 0 && strstr(err, "byte 1: expected a string"));
}

/* ---- the status of a failed read -------------------------------------------------- */

/* The reader says what failed, and the loaders pass it on: a file that
 * cannot be opened or read is ZG_ERR_IO, content that is not safetensors
 * ZG_ERR_FORMAT (zg_module_load used to call a missing file a format
 * error). */
TEST(st_read_status_says_file_or_content) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char missing[512], bad[512];
    snprintf(missing, sizeof missing, "%s/none.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    FILE *f = fopen(bad, "wb");
    CHECK(f != NULL);
    if (f) {
        /* A header length of 2, then a header that is not a JSON object. */
        fwrite("\x02\0\0\0\0\0\0\0[]", 1, 10, f);
        fclose(f);
    }
    zg_safetensors *st = NULL;
    CHECK(zg__safetensors_open(missing, &st) == ZG_ERR_IO && !st);
    CHECK(strstr(zg_last_error(), "cannot open") != NULL);
    CHECK(zg__safetensors_open(dir, &st) == ZG_ERR_IO && !st); /* a directory: not a regular file */
    CHECK(zg__safetensors_open(bad, &st) == ZG_ERR_FORMAT && !st);
    CHECK(zg_safetensors_read(bad) == NULL);

    zg_module *m = zg_model_mlp((int64_t[]){4, 3}, 2);
    CHECK_PTR(m);
    if (m) {
        CHECK(zg_module_load(m, missing) == ZG_ERR_IO);
        CHECK(strstr(zg_last_error(), "zg_module_load") && strstr(zg_last_error(), "cannot open"));
        CHECK(zg_module_load(m, bad) == ZG_ERR_FORMAT);
        zg_tensor *p[2];
        CHECK(zg_module_params(m, p, 2) == 2);
        zg_optim_config c = zg_optim_defaults(ZG_ADAM);
        zg_optim *o = zg_optim_new(ZG_ADAM, p, 2, &c);
        CHECK_PTR(o);
        if (o) {
            CHECK(zg_optim_load(o, missing) == ZG_ERR_IO);
            CHECK(zg_optim_load(o, bad) == ZG_ERR_FORMAT);
            zg_optim_free(o);
        }
        zg_module_free(m);
    }
    zgt_remove_dir(dir);
}
