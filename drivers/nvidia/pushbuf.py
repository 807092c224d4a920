"""Pushbuffer encoder: method headers and data words (nvidia-hopper.md 4.2).

A header is SEC_OP 31:29 | count (or immediate data) 28:16 | subchannel 15:13 | method>>2 11:0.
`decode.py` reads the same format back; tests round-trip every form.
"""

from array import array

from hal import InvalidArgument

from .classes import host_c86f as host

SEC_OP_INC, SEC_OP_NON_INC, SEC_OP_IMMD, SEC_OP_ONE_INC = 1, 3, 4, 5
RELEASE_NON_STALL_INTERRUPT = True   # releases also raise a non-stall interrupt (bench/host_io.py measures it)
MAX_COUNT = 0x1FFF


def header(sec_op: int, subchannel: int, method: int, count: int) -> int:
    if not (0 <= subchannel < 8 and 0 <= method < 0x4000 and method % 4 == 0 and 0 <= count <= MAX_COUNT):
        raise InvalidArgument(f"bad method header: subchannel {subchannel}, method {method:#x}, count {count}")
    return (sec_op << 29) | (count << 16) | (subchannel << 13) | (method >> 2)


class Pushbuffer:
    """A growing list of 32-bit words; `slot()` marks a word to patch later (e.g. a Var payload)."""

    def __init__(self):
        self.words = array("I")

    def __len__(self):
        return len(self.words)

    def method(self, subchannel: int, method: int, *data: int) -> "Pushbuffer":
        """Incrementing method: data[i] goes to method + 4*i."""
        self.words.append(header(SEC_OP_INC, subchannel, method, len(data)))
        self.words.extend(d & 0xFFFFFFFF for d in data)
        return self

    def immediate(self, subchannel: int, method: int, value: int) -> "Pushbuffer":
        """One method with 13-bit data carried in the header itself (no data word)."""
        if not 0 <= value <= MAX_COUNT:
            raise InvalidArgument(f"immediate data {value:#x} does not fit 13 bits")
        self.words.append(header(SEC_OP_IMMD, subchannel, method, value))
        return self

    def non_incrementing(self, subchannel: int, method: int, n_words: int) -> int:
        """A NON_INC header followed by n_words zero data words (filled in later, all to `method`);
        returns the index of the first data word."""
        self.words.append(header(SEC_OP_NON_INC, subchannel, method, n_words))
        at = len(self.words)
        self.words.frombytes(bytes(4 * n_words))
        return at

    def slot(self) -> int:
        """Index of the next word to be written."""
        return len(self.words)

    # --- host methods shared by every channel -----------------------------------------------
    def semaphore(self, va: int, payload: int, execute: int) -> int:
        """SEM_ADDR_LO..SEM_EXECUTE; returns the word index of the payload's low half."""
        at = self.slot() + 3
        self.method(0, host.SEM_ADDR_LO, va & 0xFFFFFFFC, va >> 32, payload & 0xFFFFFFFF, payload >> 32, execute)
        return at

    def release(self, va: int, payload: int) -> int:
        """64-bit release after wait-for-idle: value at va, GPU time (ns) at va+8; va 16-byte aligned."""
        if va % 16:
            raise InvalidArgument(f"semaphore release address {va:#x} is not 16-byte aligned")
        execute = host.SEM_OP_RELEASE | host.SEM_RELEASE_WFI | host.SEM_PAYLOAD_SIZE_64BIT | host.SEM_RELEASE_TIMESTAMP
        at = self.semaphore(va, payload, execute)
        if RELEASE_NON_STALL_INTERRUPT:
            self.method(0, host.NON_STALL_INTERRUPT, 0)
        return at

    def acquire(self, va: int, payload: int) -> int:
        """Stall the channel until the 64-bit value at va >= payload (circular compare)."""
        return self.semaphore(va, payload, host.SEM_OP_ACQ_CIRC_GEQ | host.SEM_PAYLOAD_SIZE_64BIT)

    def wait_for_idle(self) -> "Pushbuffer":
        return self.method(0, host.WFI, host.WFI_SCOPE_ALL)


def gp_entry(va: int, ndwords: int) -> int:
    """A GPFIFO entry fetching ndwords of pushbuffer at va (main level, no sync)."""
    if va % 4 or va >= host.GP_ENTRY_VA_LIMIT or not 0 < ndwords < (1 << 21):
        raise InvalidArgument(f"pushbuffer at {va:#x} with {ndwords} words cannot be named by a GPFIFO entry")
    return va | (ndwords << host.GP_ENTRY_LENGTH_SHIFT)
