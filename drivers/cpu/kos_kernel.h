/* The cpu device's kernel ABI: every cpu kernel is a C function of this shape, built into a shared
 * object by the image builder (or the shell) and loaded by drivers/cpu.
 *
 * A launch covers grid[0]*grid[1]*grid[2] blocks. The executor splits that range over its worker
 * threads and calls the kernel once per chunk with [block_begin, block_end), blocks linearised x
 * fastest (x = i % grid[0], y = (i / grid[0]) % grid[1], z = i / (grid[0]*grid[1])).
 * block[] is the launch's block shape; a cpu kernel loops over its threads itself (vectorised).
 * args points at the packed parameters: a C struct of the declared param types in order, natural
 * alignment (hal/program.py, the same layout CUDA uses for kernel params).
 */
#ifndef KOS_KERNEL_H
#define KOS_KERNEL_H
#include <stdint.h>

typedef struct kos_launch {
    uint32_t grid[3];
    uint32_t block[3];
} kos_launch;

#define KOS_KERNEL(name) \
    void name(const kos_launch *L, uint64_t block_begin, uint64_t block_end, const void *args)

#endif
