#include "CThreadShims.h"

#include <sys/prctl.h>

int cthread_set_timer_slack(uint64_t nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, (unsigned long)nanoseconds, 0, 0, 0);
}
