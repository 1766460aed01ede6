#include "CTimex.h"
#include <sys/timex.h>

int CTimex_synchronised(void) {
    struct timex t = {0};
    int result = adjtimex(&t);
    if (result < 0) return -1;
    return (result == TIME_ERROR || (t.status & STA_UNSYNC)) ? 0 : 1;
}
