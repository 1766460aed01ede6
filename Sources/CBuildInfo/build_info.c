// scripts/setup.sh writes commit.h (ignored by git) from `git rev-parse`; a build without it says "unknown".
#include "CBuildInfo.h"
#if __has_include("commit.h")
#include "commit.h"
#endif
#ifndef METERGATE_COMMIT
#define METERGATE_COMMIT "unknown"
#endif

const char *metergate_build_commit(void) { return METERGATE_COMMIT; }
