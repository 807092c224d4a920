"""GPFIFO channels: one channel group (TSG) per engine, each with one channel.

The compute queue's TSG runs on the graphics engine (with a subcontext); the copy queue's TSG runs
on an asynchronous copy engine (COPYn, as UVM's CE channels do: nv_gpu_ops.c), not the graphics
engine's own CE. Each channel has a ring of GP entries and its USERD in BAR1-mapped VRAM, an error notifier in
system memory, its engine object bound on its subchannel, a work-submit token for the usermode
doorbell, and (UVM-owned VA space only) a UVM-registered VA range for RM's context buffers
(nvidia-hopper.md 3.4 steps 17-21).
Submitting = GP entry, GPPut, doorbell (4.1). A faulted or hung group is torn down and rebuilt
whole (`ChannelGroup.close` then a new one): RC errors kill every channel of the TSG.
"""

from .classes import compute_cbc0, controls, copy_c8b5, host_c86f, objects
from .faults import notifier_error
from .rm import munmap

GP_ENTRIES = 1024
USERD_OFFSET_B = GP_ENTRIES * 8                  # right after the ring, 512-byte aligned
CHANNEL_MEM_B = 0x10000                          # ring + USERD, per channel
SUBCONTEXT_ASYNC = 1


class Channel:
    def __init__(self, group, index: int, engine_class: int, subchannel: int, engine_params=None):
        g = group.gpu
        self.group, self.subchannel, self.engine_class = group, subchannel, engine_class
        self.mem_va = group.ring_mem.va + index * CHANNEL_MEM_B
        self.notifier_handle, self.notifier_addr, self.notifier_B = g.memory.alloc_notifier()
        self.ring = g.ffi.cast("uint64_t *", self.mem_va)
        self.gp_put_reg = g.ffi.cast("uint32_t *", self.mem_va + USERD_OFFSET_B + host_c86f.USERD_GP_PUT)
        self.gp_get_reg = g.ffi.cast("uint32_t *", self.mem_va + USERD_OFFSET_B + host_c86f.USERD_GP_GET)
        params = g.ffi.new("NV_CHANNEL_ALLOC_PARAMS *", {
            "hObjectError": self.notifier_handle, "hObjectBuffer": group.ring_mem.handle,
            "gpFifoOffset": self.mem_va, "gpFifoEntries": GP_ENTRIES, "hContextShare": group.ctxshare,
            "engineType": group.engine_type})
        params.hUserdMemory[0] = group.ring_mem.handle
        params.userdOffset[0] = index * CHANNEL_MEM_B + USERD_OFFSET_B
        self.handle = g.rm.alloc(group.tsg, g.classes["gpfifo"], params, root=g.client, what="GPFIFO channel")
        self.engine = g.rm.alloc(self.handle, engine_class, engine_params, root=g.client, what="engine object")
        token = g.rm.control(g.client, self.handle, controls.NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
                             g.ffi.new("NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS *"), "work submit token")
        self.token = token.workSubmitToken
        g.va_space.register_channel(self)
        self.put = 0
        self.doorbell = g.doorbell

    def push(self, *entries: int):
        """Queue GP entries (from pushbuf.gp_entry), then one GPPut write and one doorbell."""
        ring, put = self.ring, self.put
        for e in entries:
            ring[put % GP_ENTRIES] = e
            put += 1
        self.put = put
        self.gp_put_reg[0] = put % GP_ENTRIES
        self.doorbell[0] = self.token

    def gp_get(self) -> int:
        return self.gp_get_reg[0]

    def error(self) -> str | None:
        return notifier_error(self.notifier_addr)

    def close(self):
        self.group.gpu.va_space.unregister_channel(self)


class ChannelGroup:
    """A TSG on one engine with the channel of one queue kind, scheduled and ready for pushbuffers."""

    def __init__(self, gpu, kind: str):
        self.gpu = g = gpu
        self.kind, self.channels, self.ctxshare = kind, [], 0
        self.engine_type = objects.ENGINE_TYPE_GRAPHICS if kind == "compute" else g.copy_engine_type
        # the graphics TSG takes its VA space from the subcontext (the HW-verified recipe); a CE TSG names it
        self.tsg = g.rm.alloc(g.device, objects.KEPLER_CHANNEL_GROUP_A, g.ffi.new(
            "NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS *",
            {"engineType": self.engine_type, "hVASpace": 0 if kind == "compute" else g.va_space.handle}),
            root=g.client, what=f"{kind} TSG")
        try:
            self.ring_mem = g.memory.alloc_vram(CHANNEL_MEM_B, cpu_map=True, contiguous=True)
            if kind == "compute":
                self.ctxshare = g.rm.alloc(self.tsg, objects.FERMI_CONTEXT_SHARE_A,
                                           g.ffi.new("NV_CTXSHARE_ALLOCATION_PARAMETERS *",
                                                     {"hVASpace": g.va_space.handle, "flags": SUBCONTEXT_ASYNC}),
                                           root=g.client, what="subcontext")
                self.channel = Channel(self, 0, g.classes["compute"], compute_cbc0.SUBCHANNEL)
            else:
                ce = g.ffi.new("NVB0B5_ALLOCATION_PARAMETERS *", {"version": 1, "engineType": self.engine_type})
                self.channel = Channel(self, 0, g.classes["copy"], copy_c8b5.SUBCHANNEL, ce)
            self.channels.append(self.channel)
            g.rm.control(g.client, self.tsg, controls.NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
                         g.ffi.new("NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS *", {"bEnable": 1}), "schedule TSG")
        except BaseException:
            self.close()
            raise

    def error(self) -> str | None:
        e = self.channels[0].error() if self.channels else None
        return f"{self.kind} channel: {e}" if e else None

    def close(self):
        """Unregister the channels from UVM, free the TSG (RM frees its channels), then the memory."""
        g = self.gpu
        errors = []
        for ch in self.channels:
            try:
                ch.close()
            except Exception as e:  # keep tearing down; report the first failure
                errors.append(e)
        g.rm.free(g.client, g.device, self.tsg)
        for ch in self.channels:
            g.rm.free(g.client, g.device, ch.notifier_handle)
            munmap(ch.notifier_addr, ch.notifier_B)
        if hasattr(self, "ring_mem"):
            g.memory.free(self.ring_mem)
        self.channels = []
        if errors:
            raise errors[0]
