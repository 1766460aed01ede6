// A stand-in for libnvidia-ml.so.1: the same symbol names and C types as nvml.h (API version 13), with GPUs read
// from the file named by FAKE_NVML_STATE (a compile-time string) on every call. Built by the PowerRails tests.
//
// State file, one GPU per line:  uuid name energy_mJ power_mW limit_mW module_power_mW lost
// where -1 means "not supported" and lost=1 makes every call for that GPU return NVML_ERROR_GPU_IS_LOST.
// A missing state file makes nvmlInit_v2 return NVML_ERROR_DRIVER_NOT_LOADED.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef FAKE_NVML_STATE
#error "compile with -DFAKE_NVML_STATE='\"/path/to/state\"'"
#endif

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef enum { NVML_VALUE_TYPE_DOUBLE = 0, NVML_VALUE_TYPE_UNSIGNED_INT = 1 } nvmlValueType_t;
typedef union {
    double dVal; int siVal; unsigned int uiVal; unsigned long ulVal; unsigned long long ullVal; signed long long sllVal;
    unsigned short usVal;
} nvmlValue_t;
typedef struct {
    unsigned int fieldId; unsigned int scopeId; long long timestamp; long long latencyUsec;
    nvmlValueType_t valueType; nvmlReturn_t nvmlReturn; nvmlValue_t value;
} nvmlFieldValue_t;

// The offsets MeterGate's NVMLLibrary writes and reads by hand.
_Static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t size");
_Static_assert(offsetof(nvmlFieldValue_t, scopeId) == 4, "scopeId");
_Static_assert(offsetof(nvmlFieldValue_t, valueType) == 24, "valueType");
_Static_assert(offsetof(nvmlFieldValue_t, nvmlReturn) == 28, "nvmlReturn");
_Static_assert(offsetof(nvmlFieldValue_t, value) == 32, "value");

enum { SUCCESS = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_SUPPORTED = 3, NOT_FOUND = 6, INSUFFICIENT_SIZE = 7,
       DRIVER_NOT_LOADED = 9, GPU_IS_LOST = 15 };

typedef struct { char uuid[96]; char name[96]; long long energy, power, limit, module; int lost; } fake_gpu;
static fake_gpu gpus[16];
static int gpu_count;
static int initialized;

static int load(void) {
    FILE *f = fopen(FAKE_NVML_STATE, "r");
    if (!f) return 0;
    char line[512];
    gpu_count = 0;
    while (gpu_count < 16 && fgets(line, sizeof line, f)) {
        fake_gpu *g = &gpus[gpu_count];
        if (line[0] == '#') continue;
        if (sscanf(line, "%95s %95s %lld %lld %lld %lld %d", g->uuid, g->name, &g->energy, &g->power, &g->limit,
                   &g->module, &g->lost) == 7)
            gpu_count++;
    }
    fclose(f);
    return 1;
}

static fake_gpu *gpu(nvmlDevice_t device, nvmlReturn_t *status) {
    if (!initialized) { *status = UNINITIALIZED; return NULL; }
    if (!load()) { *status = DRIVER_NOT_LOADED; return NULL; }
    intptr_t index = (intptr_t)device - 1;
    if (index < 0 || index >= gpu_count) { *status = INVALID_ARGUMENT; return NULL; }
    if (gpus[index].lost) { *status = GPU_IS_LOST; return NULL; }
    *status = SUCCESS;
    return &gpus[index];
}

nvmlReturn_t nvmlInit_v2(void) {
    if (!load()) return DRIVER_NOT_LOADED;
    initialized++;
    return SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return UNINITIALIZED;
    initialized--;
    return SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case SUCCESS: return "Success";
    case UNINITIALIZED: return "Uninitialized";
    case INVALID_ARGUMENT: return "Invalid Argument";
    case NOT_SUPPORTED: return "Not Supported";
    case NOT_FOUND: return "Not Found";
    case DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (snprintf(version, length, "%s", "550.54.15-fake") >= (int)length) return INSUFFICIENT_SIZE;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return UNINITIALIZED;
    if (!load()) return DRIVER_NOT_LOADED;
    *count = (unsigned int)gpu_count;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized) return UNINITIALIZED;
    load();
    if (index >= (unsigned int)gpu_count) return INVALID_ARGUMENT;
    if (gpus[index].lost) return GPU_IS_LOST;
    *device = (nvmlDevice_t)(intptr_t)(index + 1);
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    if (!initialized) return UNINITIALIZED;
    load();
    for (int i = 0; i < gpu_count; i++) {
        if (strcmp(gpus[i].uuid, uuid) == 0) {
            if (gpus[i].lost) return GPU_IS_LOST;
            *device = (nvmlDevice_t)(intptr_t)(i + 1);
            return SUCCESS;
        }
    }
    return NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    nvmlReturn_t status;
    fake_gpu *g = gpu(device, &status);
    if (!g) return status;
    if (snprintf(uuid, length, "%s", g->uuid) >= (int)length) return INSUFFICIENT_SIZE;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    nvmlReturn_t status;
    fake_gpu *g = gpu(device, &status);
    if (!g) return status;
    if (snprintf(name, length, "%s", g->name) >= (int)length) return INSUFFICIENT_SIZE;
    return SUCCESS;
}

#ifndef FAKE_NVML_WITHOUT_ENERGY_FUNCTION
nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    nvmlReturn_t status;
    fake_gpu *g = gpu(device, &status);
    if (!g) return status;
    if (g->energy < 0) return NOT_SUPPORTED;
    *energy = (unsigned long long)g->energy;
    return SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    nvmlReturn_t status;
    fake_gpu *g = gpu(device, &status);
    if (!g) return status;
    if (g->power < 0) return NOT_SUPPORTED;
    *power = (unsigned int)g->power;
    return SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device, unsigned int *limit) {
    nvmlReturn_t status;
    fake_gpu *g = gpu(device, &status);
    if (!g) return status;
    if (g->limit < 0) return NOT_SUPPORTED;
    *limit = (unsigned int)g->limit;
    return SUCCESS;
}

// Only module-scope instantaneous power (field 186, scope 1) is known; every other field is NOT_SUPPORTED, and the
// call itself succeeds, as NVML's does when any field could be filled.
nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int count, nvmlFieldValue_t *values) {
    nvmlReturn_t status;
    fake_gpu *g = gpu(device, &status);
    if (!g) return status;
    for (int i = 0; i < count; i++) {
        values[i].timestamp = 1700000000000000LL;
        values[i].latencyUsec = 0;
        if (values[i].fieldId == 186 && values[i].scopeId == 1 && g->module >= 0) {
            values[i].valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            values[i].value.uiVal = (unsigned int)g->module;
            values[i].nvmlReturn = SUCCESS;
        } else {
            values[i].nvmlReturn = NOT_SUPPORTED;
        }
    }
    return SUCCESS;
}
