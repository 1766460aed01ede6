#ifndef CTIMEX_H
#define CTIMEX_H
// The kernel's clock discipline state through adjtimex(2). Declared without <sys/timex.h>, whose struct timeval
// would clash with Glibc's in Swift. Only the Gateway module imports this.

/// A read of the kernel's clock state (adjtimex with modes 0): 1 when in sync, 0 when not (STA_UNSYNC or
/// TIME_ERROR), -1 when the call failed (errno is set).
int CTimex_synchronised(void);
#endif
