/* ZG_SANITIZE reaches a program that never calls the sanitizer's API: the
 * lower layers only emit events, so the sanitizer must be linked in and
 * listening from the start without being named. This file (and the
 * harness) call no zg_sanitize_* function on purpose; a static link that
 * dropped src/check, or a listener installed only on first API use, fails
 * here. */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

/* Two steps with no zero_grad between them: the second step uses stale
 * gradients, which the sanitizer's error mode refuses. */
static int stale_loop(void) {
    zg_tensor *w = zg_tensor_new(ZG_FLOAT32, (int64_t[]){2}, 1);
    zg_tensor_fill_(w, 1.0f); /* non-zero grads: zeros added onto zeros would be harmless */
    zg_tensor_set_requires_grad(w, true);
    zg_optim_config c = zg_optim_defaults(ZG_SGD);
    zg_optim *o = zg_optim_new(ZG_SGD, &w, 1, &c);
    int rc = ZG_OK;
    for (int i = 0; i < 2 && rc == ZG_OK; i++) {
        zg_tensor *loss = zg_sum(zg_mul(w, w));
        if (zg_backward(loss, NULL)) rc = -100;
        else rc = zg_optim_step(o);
        zg_arena_reset();
    }
    zg_optim_free(o);
    zg_tensor_free(w);
    return rc;
}

/* Runs only in the child started below. */
TEST(stale_child) {
    const char *want = getenv("ZG_SAN_ENV_EXPECT");
    if (!want) return;
    zg_clear_error();
    int rc = stale_loop();
    if (!strcmp(want, "refused")) {
        CHECK(rc == ZG_ERR_STATE);
        CHECK(strstr(zg_last_error(), "stale") != NULL);
    } else {
        CHECK(rc == ZG_OK);
    }
}

TEST(env_variable_alone_turns_the_sanitizer_on) {
    const char *exe = zgt_self_exe();
    CHECK_PTR(exe);
    if (!exe) return;
    const char *env[3] = {"error", "off", NULL};
    const char *expect[3] = {"refused", "allowed", "allowed"};
    for (int i = 0; i < 3; i++) {
        char cmd[4400];
        const char *set = env[i] ? "ZG_SANITIZE=" : "env -u ZG_SANITIZE", *val = env[i] ? env[i] : "";
        snprintf(cmd, sizeof cmd, "%s%s ZG_SAN_ENV_EXPECT=%s '%s' stale_child >/dev/null", set, val, expect[i], exe);
        int rc = system(cmd);
        if (rc != 0) zgt_fail(__FILE__, __LINE__, "ZG_SANITIZE=%s: child exited with %d", env[i] ? val : "(unset)", rc);
    }
}
