#ifndef CMODBUS_SHIM_H
#define CMODBUS_SHIM_H
// libmodbus (Debian: libmodbus-dev). Only the Modbus module imports this.
#include <modbus.h>
#include <errno.h>

// libmodbus reports its own failures through errno, in values above MODBUS_ENOBASE.
// The EMB* macros are expressions Swift cannot import: re-export them as functions.
static inline int CModbus_ENOBASE(void) { return MODBUS_ENOBASE; }
static inline int CModbus_EMBBADCRC(void) { return EMBBADCRC; }
static inline int CModbus_EMBBADDATA(void) { return EMBBADDATA; }
static inline int CModbus_EMBBADEXC(void) { return EMBBADEXC; }
static inline int CModbus_EMBMDATA(void) { return EMBMDATA; }
static inline int CModbus_EMBBADSLAVE(void) { return EMBBADSLAVE; }
static inline int CModbus_EMBUNKEXC(void) { return EMBUNKEXC; }
static inline const char *CModbus_version_string(void) { return LIBMODBUS_VERSION_STRING; }
static inline int CModbus_RTU_RS485(void) { return MODBUS_RTU_RS485; }
static inline int CModbus_RTU_RS232(void) { return MODBUS_RTU_RS232; }
static inline int CModbus_MAX_READ_REGISTERS(void) { return MODBUS_MAX_READ_REGISTERS; }
static inline int CModbus_TCP_MAX_ADU_LENGTH(void) { return MODBUS_TCP_MAX_ADU_LENGTH; }
static inline int CModbus_RTU_MAX_ADU_LENGTH(void) { return MODBUS_RTU_MAX_ADU_LENGTH; }
static inline int CModbus_BROADCAST_ADDRESS(void) { return MODBUS_BROADCAST_ADDRESS; }

// modbus_read_bits and friends take uint8_t *, which Swift does not let alias; take void * instead.
static inline int CModbus_read_bits(modbus_t *ctx, int addr, int nb, void *dest) {
    return modbus_read_bits(ctx, addr, nb, (uint8_t *)dest);
}
static inline int CModbus_read_input_bits(modbus_t *ctx, int addr, int nb, void *dest) {
    return modbus_read_input_bits(ctx, addr, nb, (uint8_t *)dest);
}
static inline int CModbus_receive(modbus_t *ctx, void *req) {
    return modbus_receive(ctx, (uint8_t *)req);
}
static inline int CModbus_reply(modbus_t *ctx, const void *req, int req_length, modbus_mapping_t *mb_mapping) {
    return modbus_reply(ctx, (const uint8_t *)req, req_length, mb_mapping);
}
static inline int CModbus_reply_exception(modbus_t *ctx, const void *req, unsigned int exception_code) {
    return modbus_reply_exception(ctx, (const uint8_t *)req, exception_code);
}
static inline int CModbus_send_raw_request(modbus_t *ctx, const void *raw_req, int raw_req_length) {
    return modbus_send_raw_request(ctx, (const uint8_t *)raw_req, raw_req_length);
}
static inline int CModbus_receive_confirmation(modbus_t *ctx, void *rsp) {
    return modbus_receive_confirmation(ctx, (uint8_t *)rsp);
}
static inline int CModbus_errno(void) { return errno; }

#endif
