"""Measuring on a device (torch only, the ``profile`` extra): the kernel profiler, the
collective benchmarks it runs, the attention kernels it shares with the reference
executor, and the facts every measurement records of where it ran.

Nothing else in ``profiles`` imports this package, so the simulator, the planners and
the tests that need no device never load torch.
"""

from profiles.measure.device import command_line, device_facts
from profiles.measure.kernels import TORCH_DTYPES, decode_attention, key_slots, prefill_attention
from profiles.measure.profiler import ProfileGrid, run_profile

__all__ = [
    "TORCH_DTYPES",
    "ProfileGrid",
    "command_line",
    "decode_attention",
    "device_facts",
    "key_slots",
    "prefill_attention",
    "run_profile",
]
