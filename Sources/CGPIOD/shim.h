#ifndef CGPIOD_SHIM_H
#define CGPIOD_SHIM_H
// libgpiod v1 (Debian 12: libgpiod-dev 1.6). Only the Pulse module imports this.
#include <gpiod.h>
#include <errno.h>

static inline int CGPIOD_errno(void) { return errno; }

#endif
