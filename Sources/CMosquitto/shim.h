#ifndef CMOSQUITTO_SHIM_H
#define CMOSQUITTO_SHIM_H
// libmosquitto (Debian: libmosquitto-dev). Only the MQTT module imports this.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <errno.h>

static inline int CMosquitto_errno(void) { return errno; }

#endif
