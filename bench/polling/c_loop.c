/* The polling benchmark's reference: a plain C loop over libmodbus making, once a second, the requests the
 * gateway's plan makes for every meter, against the same Modbus TCP servers. One thread per server port, as
 * the gateway polls each bus on a thread of its own. Prints the CPU time and the requests answered in the
 * measured window (after the warm-up), so polling.py can set the gateway's CPU per request beside it.
 *
 *   c_loop WARMUP_S WINDOW_S UNITS_PER_PORT PORT[,PORT...] FC:ADDRESS:COUNT [FC:ADDRESS:COUNT...]
 */
#include <errno.h>
#include <modbus.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct request { int function, address, count; };

static struct request requests[16];
static int request_count;
static int units_per_port;
static double warmup_end, window_end;
static atomic_long answered, failed;
static atomic_int measuring;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void sleep_until(double when) {
    double left = when - now();
    if (left <= 0) return;
    struct timespec t = { (time_t)left, (long)((left - (time_t)left) * 1e9) };
    while (nanosleep(&t, &t) == -1 && errno == EINTR) {}
}

static void *poll_port(void *arg) {
    int port = (int)(long)arg;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    if (!ctx || modbus_connect(ctx) == -1) {
        fprintf(stderr, "c_loop: modbus_connect 127.0.0.1:%d failed: %s\n", port, modbus_strerror(errno));
        exit(1);
    }
    modbus_set_response_timeout(ctx, 1, 0);
    uint16_t registers[125];
    for (double cycle = now(); cycle < window_end; cycle += 1.0) {
        sleep_until(cycle);
        for (int unit = 1; unit <= units_per_port; unit++) {
            modbus_set_slave(ctx, unit);
            for (int r = 0; r < request_count; r++) {
                const struct request *q = &requests[r];
                int n = q->function == 3 ? modbus_read_registers(ctx, q->address, q->count, registers)
                                         : modbus_read_input_registers(ctx, q->address, q->count, registers);
                if (!atomic_load(&measuring)) continue;
                if (n == q->count) atomic_fetch_add(&answered, 1); else atomic_fetch_add(&failed, 1);
            }
        }
    }
    modbus_close(ctx);
    modbus_free(ctx);
    return NULL;
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: c_loop WARMUP_S WINDOW_S UNITS_PER_PORT PORT[,PORT...] FC:ADDRESS:COUNT...\n");
        return 2;
    }
    double warmup = atof(argv[1]), window = atof(argv[2]);
    units_per_port = atoi(argv[3]);
    for (int i = 5; i < argc && request_count < 16; i++) {
        struct request *q = &requests[request_count++];
        if (sscanf(argv[i], "%d:%d:%d", &q->function, &q->address, &q->count) != 3 || q->count < 1 || q->count > 125) {
            fprintf(stderr, "c_loop: bad request '%s' (FC:ADDRESS:COUNT)\n", argv[i]);
            return 2;
        }
    }
    pthread_t threads[64];
    int thread_count = 0;
    warmup_end = now() + warmup;
    window_end = warmup_end + window;
    for (char *port = strtok(argv[4], ","); port && thread_count < 64; port = strtok(NULL, ","))
        pthread_create(&threads[thread_count++], NULL, poll_port, (void *)(long)atoi(port));
    sleep_until(warmup_end);
    double cpu0 = cpu_seconds(), t0 = now();
    atomic_store(&measuring, 1);
    for (int i = 0; i < thread_count; i++) pthread_join(threads[i], NULL);
    double cpu1 = cpu_seconds(), t1 = now();
    printf("cpu_seconds %.6f\nwall_seconds %.3f\nanswered %ld\nfailed %ld\n", cpu1 - cpu0, t1 - t0,
           atomic_load(&answered), atomic_load(&failed));
    return 0;
}
