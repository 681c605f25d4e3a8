/* The listener of the gradient-lifecycle events (grad_events.h). */
#include "tensor_internal.h"

const zg__grad_events *zg__grad_listener;

void zg__grad_events_listen(const zg__grad_events *listener) { zg__grad_listener = listener; }
