/* The text corpus (src/data/text.c): vocabularies, the split, encoding and
 * decoding, UTF-8 errors, and batches that depend on (seed, split, step)
 * only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *corpus = "First Citizen:\nBefore we proceed any further, hear me speak.\n";

TEST(text_char_vocabulary_is_the_sorted_characters) {
    zg_text *t = zg_text_from_memory(corpus, (int64_t)strlen(corpus), ZG_TEXT_CHAR, 0.1);
    CHECK_PTR(t);
    if (!t) return;
    /* distinct characters: "\n ,.:BCFacdefhikmnoprstuwyz" = 27 */
    CHECK(zg_text_vocab_size(t) == 27);
    const int64_t n = (int64_t)strlen(corpus);
    CHECK(zg_text_num_tokens(t, false) + zg_text_num_tokens(t, true) == n);
    CHECK(zg_text_num_tokens(t, true) == (int64_t)(n * 0.1));
    int64_t ids[8];
    CHECK(zg_text_encode(t, "\n ,", ids, 8) == 3);
    CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 2); /* sorted: '\n' < ' ' < ',' */
    CHECK(zg_text_encode(t, "hear", ids, 8) == 4);
    char out[16];
    CHECK(zg_text_decode(t, ids, 4, out, sizeof out) == 4);
    CHECK(!strcmp(out, "hear"));
    CHECK_ERR(zg_text_encode(t, "Q", ids, 8), "character U+0051 at byte 0 is not in the vocabulary");
    const int64_t bad = 27;
    CHECK_ERR(zg_text_decode(t, &bad, 1, out, sizeof out), "id 27 at 0 is outside the vocabulary of 27");
    zg_text_free(t);
}

TEST(text_utf8_characters_and_byte_vocabulary) {
    const char *s = "caf\xc3\xa9 \xe2\x82\xac\xf0\x9f\x98\x80!"; /* café €😀! */
    zg_text *t = zg_text_from_memory(s, (int64_t)strlen(s), ZG_TEXT_CHAR, 0);
    CHECK_PTR(t);
    if (!t) return;
    CHECK(zg_text_num_tokens(t, false) == 8);
    int64_t ids[8];
    CHECK(zg_text_encode(t, s, ids, 8) == 8);
    char out[32];
    CHECK(zg_text_decode(t, ids, 8, out, sizeof out) == (int64_t)strlen(s));
    CHECK(!strcmp(out, s));
    zg_text_free(t);
    const char *bad[] = {"ab\xc3", "a\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "x\x80"};
    for (int i = 0; i < 5; i++) CHECK_NULL_ERR(zg_text_from_memory(bad[i], (int64_t)strlen(bad[i]), ZG_TEXT_CHAR, 0), "invalid UTF-8 at byte");
    zg_text *b = zg_text_from_memory(bad[0], 3, ZG_TEXT_BYTE, 0);
    CHECK(b && zg_text_vocab_size(b) == 256 && zg_text_num_tokens(b, false) == 3);
    CHECK(zg_text_encode(b, "\xc3", ids, 8) == 1 && ids[0] == 0xc3);
    zg_text_free(b);
    CHECK_NULL_ERR(zg_text_from_memory(s, 3, ZG_TEXT_CHAR, 1.0), "val_fraction 1 must lie in [0, 1)");
}

TEST(text_batches_depend_on_seed_split_and_step_only) {
    char big[4000];
    for (int i = 0; i < 3999; i++) big[i] = (char)('a' + (i * 7 + i / 13) % 26);
    big[3999] = 0;
    zg_text *t = zg_text_from_memory(big, 3999, ZG_TEXT_CHAR, 0.1);
    CHECK_PTR(t);
    if (!t) return;
    zg_tensor *x, *y, *x2, *y2, *xv, *yv;
    CHECK_OK(zg_text_batch(t, false, 4, 16, 7, 3, &x, &y));
    /* an unrelated batch in between changes nothing */
    CHECK_OK(zg_text_batch(t, false, 4, 16, 7, 4, &x2, &y2));
    zg_tensor_free(x2);
    zg_tensor_free(y2);
    CHECK_OK(zg_text_batch(t, false, 4, 16, 7, 3, &x2, &y2));
    CHECK(!memcmp(zg_tensor_data_i64(x), zg_tensor_data_i64(x2), 64 * sizeof(int64_t)));
    /* y is x shifted by one token within each window */
    const int64_t *X = zg_tensor_data_i64(x), *Y = zg_tensor_data_i64(y);
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 15; j++) CHECK(Y[r * 16 + j] == X[r * 16 + j + 1]);
    /* another seed draws other windows; the validation split is the last 10% (399 tokens) */
    zg_tensor_free(x2);
    zg_tensor_free(y2);
    CHECK_OK(zg_text_batch(t, false, 4, 16, 8, 3, &x2, &y2));
    CHECK(memcmp(zg_tensor_data_i64(x), zg_tensor_data_i64(x2), 64 * sizeof(int64_t)) != 0);
    CHECK_OK(zg_text_batch(t, true, 2, 16, 7, 3, &xv, &yv));
    zg_tensor *bx = NULL, *by = NULL;
    CHECK_ERR(zg_text_batch(t, true, 2, 400, 7, 3, &bx, &by), "the validation split has 399 tokens");
    CHECK(!bx && !by);
    zg_tensor *all[] = {x, y, x2, y2, xv, yv};
    for (int i = 0; i < 6; i++) zg_tensor_free(all[i]);
    zg_text_free(t);
}

/* Every offset of a small split is drawn, none outside it. */
TEST(text_batch_offsets_cover_the_split) {
    const char *s = "abcdefghij"; /* 10 tokens, block 3: offsets 0..6 */
    zg_text *t = zg_text_from_memory(s, 10, ZG_TEXT_CHAR, 0);
    CHECK_PTR(t);
    if (!t) return;
    int seen[7] = {0};
    for (int step = 0; step < 50; step++) {
        zg_tensor *x, *y;
        CHECK_OK(zg_text_batch(t, false, 8, 3, 1, step, &x, &y));
        const int64_t *X = zg_tensor_data_i64(x);
        for (int r = 0; r < 8; r++) {
            CHECK(X[r * 3] >= 0 && X[r * 3] <= 6);
            if (X[r * 3] >= 0 && X[r * 3] <= 6) seen[X[r * 3]]++;
        }
        zg_tensor_free(x);
        zg_tensor_free(y);
    }
    for (int i = 0; i < 7; i++) CHECK(seen[i] > 20); /* 400 draws over 7 offsets: about 57 each */
    zg_text_free(t);
}

TEST(text_load_reads_a_file_and_names_it) {
    char *dir = zgt_temp_dir();
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *f = fopen(path, "wb");
    CHECK_PTR(f);
    if (f) {
        fputs(corpus, f);
        fputs("\xff", f);
        fclose(f);
    }
    CHECK_NULL_ERR(zg_text_load(path, ZG_TEXT_CHAR, 0.1), "corpus.txt': zg_text: invalid UTF-8 at byte 61");
    zg_text *b = zg_text_load(path, ZG_TEXT_BYTE, 0.1);
    CHECK(b && zg_text_num_tokens(b, false) + zg_text_num_tokens(b, true) == (int64_t)strlen(corpus) + 1);
    zg_text_free(b);
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    CHECK_NULL_ERR(zg_text_load(path, ZG_TEXT_CHAR, 0.1), "cannot open");
    zgt_remove_dir(dir);
}
