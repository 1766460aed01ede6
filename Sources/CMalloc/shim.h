#ifndef CMALLOC_SHIM_H
#define CMALLOC_SHIM_H
// glibc's malloc tuning (<malloc.h>, part of libc6: nothing to link). Swift's Glibc module does not include
// this header. Only the Gateway module imports this.
#include <malloc.h>

// M_ARENA_MAX is a plain integer macro; named here so the Swift side does not depend on how it imports.
static inline int CMalloc_arenaMaxParameter(void) { return M_ARENA_MAX; }
static inline int CMalloc_trimThresholdParameter(void) { return M_TRIM_THRESHOLD; }

#endif
