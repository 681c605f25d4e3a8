/* The training driver from C: what `zgrad train --model mlp` does, as a
 * library call. zg_train_run runs the canonical loop over the data loader,
 * evaluates after every epoch and writes a run directory (metrics.jsonl,
 * curves.svg, model.safetensors and an atomic checkpoint); zg_eval_checkpoint
 * then reloads the run and reports the test accuracy and confusion matrix.
 *
 * A short run (the first 6000 training images, 2 epochs) so that it
 * finishes in seconds; it exits non-zero below 75% test accuracy. Needs
 * Fashion-MNIST (scripts/setup installs it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zgrad.h"

int main(void) {
    char dir[] = "/tmp/zgrad-train-driver-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("train_driver: mkdtemp");
        return 1;
    }
    char out[sizeof dir + 8];
    snprintf(out, sizeof out, "%s/run", dir);

    zg_train_config cfg = zg_train_config_defaults();
    cfg.model = ZG_MODEL_MLP;      /* 784-256-128-10 */
    cfg.optimizer = ZG_ADAM;       /* lr: Adam's default, 1e-3 */
    cfg.epochs = 2;
    cfg.limit_train = 6000;
    cfg.limit_test = 2000;
    cfg.out_dir = out;
    cfg.progress = ZG_PROGRESS_OFF; /* the per-epoch summaries still print */

    zg_train_result res;
    int rc = zg_train_run(&cfg, &res);
    if (rc == ZG_OK) {
        zg_eval_result ev;
        rc = zg_eval_checkpoint(out, NULL, cfg.limit_test, &ev);
        if (rc == ZG_OK) {
            printf("reloaded from %s: accuracy %.2f%% (trained: %.2f%%)\n", out, 100 * ev.accuracy, 100 * res.test_acc);
            printf("confusion matrix row 0 (T-shirt/top):");
            for (int j = 0; j < ev.num_classes; j++) printf(" %lld", (long long)ev.confusion[j]);
            printf("\n");
            if (ev.accuracy != res.test_acc) rc = ZG_ERR_STATE;
            zg_eval_result_free(&ev);
        }
    }
    if (rc) fprintf(stderr, "train_driver: %s\n", zg_last_error());

    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "train_driver: could not remove %s\n", dir);
    zg_arena_free_all();
    return rc == ZG_OK && res.test_acc >= 0.75 ? 0 : 1;
}
