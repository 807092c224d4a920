"""Process start -> first kernel result through kernelos's NVIDIA driver (timed from outside by
bench/nv_vs_cuda.py). The kernel comes from the NVRTC disk cache, as a device image would carry it."""

import struct

import hal

SRC = r'extern "C" __global__ void write_value(unsigned *out, unsigned v) { out[threadIdx.x] = v + threadIdx.x; }'



def main():
    dev = hal.open("nv:0")
    prog = dev.load_program(hal.compile(SRC, "write_value", dev.info.arch), "write_value",
                            hal.KernelMeta(params=("ptr", "u32")))
    out, done = dev.alloc(128, host_visible=True), dev.signal(0)
    dev.queue().stream().launch(prog, [out, 1234], grid=(1,), block=(32,)).signal(done, 1).submit()
    done.wait(1, 10)
    assert struct.unpack("<32I", out.view()) == tuple(1234 + i for i in range(32))
    print("first_result ok")
    dev.close()


if __name__ == "__main__":
    main()
