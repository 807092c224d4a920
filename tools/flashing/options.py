"""Knobs shared by every flashing operation, read in one place (the CLI fills them)."""

from dataclasses import dataclass

from .progress import Progress


@dataclass
class FlashOptions:
    backend: object = None              # pyusb backend; None = the system's (libusb)
    timeout_ms: int = 2000              # every single USB transfer
    busy_deadline_s: float = 10.0       # longest a device may stay busy (dfuDNBUSY, SPI WIP)
    reenumerate_timeout_s: float = 10.0 # wait for a device to come back after detach/reset
    retries: int = 2                    # DFU: recover to dfuIDLE and retry this often
    dry_run: bool = False
    verify: bool = True
    reset_after: bool = True            # DFU: USB reset at the end so the new firmware runs
    show_progress: bool = True

    def progress(self, label: str, total_B: int) -> Progress:
        return Progress(label, total_B, enabled=self.show_progress)
