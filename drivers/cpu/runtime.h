/* The cpu runtime's interface (runtime.c). The part between the cdef markers is also fed to cffi
 * (drivers/cpu/native.py), so it stays plain declarations and integer #defines. */
#ifndef KOS_RUNTIME_H
#define KOS_RUNTIME_H
#include <stdint.h>

/* cdef begin */
#define KOS_OK 0
#define KOS_TIMEOUT 1
#define KOS_FAULT 2
#define KOS_STOPPED 3
#define KOS_INVALID 4

#define KOS_OP_NOP 0
#define KOS_OP_LAUNCH 1
#define KOS_OP_COPY 2
#define KOS_OP_SIGNAL 3
#define KOS_OP_WAIT 4
#define KOS_OP_TIMESTAMP 5
#define KOS_OP_SETVALS 6
#define KOS_OP_INDIRECT 7

#define KOS_FLAG_VAR 1
#define KOS_MAX_VARS 60
#define KOS_SETVALS_PER_PACKET 6

/* One ring entry, 64 bytes. SIGNAL/WAIT with KOS_FLAG_VAR use vals[slot] + value (mod 2^64), the
 * Var values bound by the SETVALS packets that precede each INDIRECT (one submit of a recorded stream). */
typedef struct kos_packet {
    uint16_t op;
    uint16_t flags;
    uint32_t slot;
    union {
        struct { uint32_t grid[3]; uint32_t block[3]; uint64_t fn; uint64_t args; } launch; /* starts like kos_launch */
        struct { uint64_t dst; uint64_t src; uint64_t size_B; } copy;
        struct { uint64_t addr; uint64_t value; } sig;             /* SIGNAL, WAIT, TIMESTAMP */
        struct { uint32_t base; uint32_t count; uint64_t vals[6]; } setvals;
        struct { uint64_t packets; uint64_t count; } indirect;     /* a recorded stream, run in place */
    } u;
} kos_packet;

typedef struct kos_dev kos_dev;
typedef struct kos_queue kos_queue;

kos_dev *kos_dev_create(int nworkers, uint64_t spin_ns);
void kos_dev_destroy(kos_dev *d);

kos_queue *kos_queue_create(kos_dev *d, uint64_t capacity);
void kos_queue_destroy(kos_queue *q);
/* Push SETVALS + INDIRECT for a recorded stream; returns the ring's wptr after it, or -KOS_<error>. */
int64_t kos_queue_submit(kos_queue *q, uint64_t packets, uint64_t count, const uint64_t *vals, uint32_t nvals,
                         int64_t timeout_ns);
uint64_t kos_queue_rptr(kos_queue *q);
void kos_queue_state(kos_queue *q, uint64_t *out);

void kos_signal_set(kos_dev *d, uint64_t addr, uint64_t value);
uint64_t kos_signal_read(uint64_t addr);
int kos_signal_wait(kos_dev *d, uint64_t addr, uint64_t value, int64_t timeout_ns);

uint64_t kos_map(uint64_t size_B);
int kos_unmap(uint64_t addr, uint64_t size_B);
void *kos_dlopen(const char *path, char *err, int err_len);
uint64_t kos_dlsym(void *handle, const char *name);
int kos_dlclose(void *handle);
uint64_t kos_now_ns(void);
/* cdef end */

#endif
