#ifndef CBUILDINFO_H
#define CBUILDINFO_H
// The commit the binary was built from: a C string, because SwiftPM passes values to C defines only.
const char *metergate_build_commit(void);
#endif
