/*
 * Preloaded before libfaketime by the fault suite's clock scenario (faults/faultsuite.py, scenario_clock).
 *
 * libfaketime 0.9.10 rewrites the absolute expiry of every timerfd_settime() call by the fake wall-clock
 * offset, CLOCK_BOOTTIME timers included, even with FAKETIME_DONT_FAKE_MONOTONIC=1. libdispatch arms Swift's
 * Task.sleep (ContinuousClock) on a CLOCK_BOOTTIME timerfd, so a wall clock set back 90 s made every sleep in
 * the gateway last 90 s longer (ticks stopped, SIGTERM could not finish the shutdown) and one set forward
 * made them fire at once. These two calls go straight to the kernel, so only the wall clock is fake.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>

struct itimerspec;

/* The system call timerfd_settime(2), unchanged. */
int timerfd_settime(int fd, int flags, const struct itimerspec *new_value, struct itimerspec *old_value) {
    return (int)syscall(SYS_timerfd_settime, fd, flags, new_value, old_value);
}

/* The system call timerfd_gettime(2), unchanged. */
int timerfd_gettime(int fd, struct itimerspec *curr_value) {
    return (int)syscall(SYS_timerfd_gettime, fd, curr_value);
}
