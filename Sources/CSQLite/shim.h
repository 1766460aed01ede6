#ifndef CSQLITE_SHIM_H
#define CSQLITE_SHIM_H
// SQLite (Debian: libsqlite3-dev). Only the Outbox module imports this.
#include <sqlite3.h>

// SQLITE_TRANSIENT / SQLITE_STATIC are casts of integers to function pointers: Swift cannot import them.
static inline sqlite3_destructor_type CSQLite_transient(void) { return SQLITE_TRANSIENT; }
static inline sqlite3_destructor_type CSQLite_static(void) { return SQLITE_STATIC; }

// sqlite3_db_config is variadic; one shim per call shape that MeterGate uses.
static inline int CSQLite_db_config_int(sqlite3 *db, int op, int value, int *out) {
    return sqlite3_db_config(db, op, value, out);
}

#endif
