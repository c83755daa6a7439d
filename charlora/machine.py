"""How much memory this machine can give to training: Apple unified memory, an NVIDIA GPU's, or Linux RAM.

Reading the system and interpreting what it said are apart: :func:`read_machine` asks the system
(``sysctl -n hw.memsize`` on macOS, ``nvidia-smi --query-gpu=memory.total`` where mlx runs on an
NVIDIA GPU, ``MemAvailable`` in ``/proc/meminfo`` on a Linux CPU) and returns the raw answers as a
:class:`MachineReadings`; :func:`machine_memory` turns readings into a :class:`MachineMemory`. Tests
simulate a Mac, a GPU box or a machine that answers nothing by passing readings (or a
``MachineMemory``) in; nothing in the project is patched.

Headroom (what training may not use) is part of the answer, stated with it:

- Apple unified memory: 75 % of ``hw.memsize`` is usable. macOS, the apps you keep open and Metal's
  working-set cap (about two thirds to three quarters of the RAM) need the rest.
- NVIDIA: the card's total less 10 % (at least 1 GB) for the CUDA context, the allocator's
  fragmentation and a display.
- Linux CPU: 90 % of ``MemAvailable`` (memory already in use by others is not counted at all).

GB in this project's memory figures means 2**30 bytes (a "16 GB" Mac has 16 x 2**30 bytes).
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

GB = 1 << 30

APPLE_USABLE = 0.75
NVIDIA_RESERVED, NVIDIA_MIN_RESERVED = 0.10, 1 * GB
LINUX_USABLE = 0.90


@dataclass(frozen=True)
class MachineReadings:
    """What the system answered, as text; None where it did not answer (no such command, an error)."""

    system: str                  # platform.system(): "Darwin", "Linux", ...
    mlx_device: str | None       # str(mlx.core.default_device()): "Device(gpu, 0)" or "Device(cpu, 0)"
    hw_memsize: str | None       # `sysctl -n hw.memsize` (macOS): bytes
    nvidia_smi: str | None       # `nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`: MiB per GPU
    meminfo: str | None          # /proc/meminfo (Linux)


@dataclass(frozen=True)
class MachineMemory:
    """The memory training may use on this machine, and how that was found."""

    kind: str                    # "apple" (unified memory), "nvidia" (GPU memory), "linux-cpu" (RAM), "unknown"
    total_bytes: int | None      # the machine's memory of that kind (None: unknown)
    usable_bytes: int | None     # what training may use after headroom (None: unknown)
    source: str                  # where the figure came from
    headroom: str                # the rule that turned total into usable

    @property
    def known(self) -> bool:
        """Whether the machine's memory was detected."""
        return self.usable_bytes is not None

    def describe(self) -> str:
        """``macOS, 32.0 GB unified memory (sysctl hw.memsize): 24.0 GB usable (75 %: ...)``."""
        if not self.known:
            return f"memory not detected ({self.source})"
        label = {"apple": "unified memory", "nvidia": "GPU memory", "linux-cpu": "RAM available"}[self.kind]
        return (f"{self.total_bytes / GB:.1f} GB {label} ({self.source}): "
                f"{self.usable_bytes / GB:.1f} GB usable ({self.headroom})")

    def as_record(self) -> dict:
        """The figures for metrics/train.json (where they came from is on the train stage's start line)."""
        return {"kind": self.kind, "total_gb": _gb(self.total_bytes), "usable_gb": _gb(self.usable_bytes)}


def _gb(value: int | None) -> float | None:
    return None if value is None else round(value / GB, 2)


def _first_int(text: str | None) -> int | None:
    """The first line of ``text`` as an integer, or None."""
    if not text:
        return None
    try:
        return int(text.strip().splitlines()[0].strip().split()[0])
    except (ValueError, IndexError):
        return None


def _meminfo_kb(meminfo: str | None, key: str) -> int | None:
    """``key`` (kB) from /proc/meminfo text, or None."""
    for line in (meminfo or "").splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == key:
            return _first_int(rest)
    return None


def machine_memory(readings: MachineReadings) -> MachineMemory:
    """Interpret the readings: which memory mlx trains in, how much there is, how much training may use."""
    on_gpu = bool(readings.mlx_device) and "gpu" in readings.mlx_device.lower()
    if readings.system == "Darwin":
        total = _first_int(readings.hw_memsize)
        if total:
            return MachineMemory("apple", total, int(total * APPLE_USABLE), "macOS sysctl hw.memsize",
                                 "75 %: macOS, open apps and Metal's working-set cap need the rest")
        return _unknown("macOS, but `sysctl -n hw.memsize` gave no number")
    if on_gpu:
        mib = _first_int(readings.nvidia_smi)
        if mib:
            total = mib << 20
            reserved = max(NVIDIA_MIN_RESERVED, int(total * NVIDIA_RESERVED))
            return MachineMemory("nvidia", total, total - reserved, "nvidia-smi memory.total, GPU 0",
                                 "less 10 % (at least 1 GB) for the CUDA context and fragmentation")
        return _unknown("mlx runs on a GPU, but `nvidia-smi --query-gpu=memory.total` gave no number")
    if readings.system == "Linux":
        available = _meminfo_kb(readings.meminfo, "MemAvailable")
        if available:
            total = available << 10
            return MachineMemory("linux-cpu", total, int(total * LINUX_USABLE), "/proc/meminfo MemAvailable",
                                 "90 % of what is available now")
        return _unknown("Linux, but /proc/meminfo has no MemAvailable")
    return _unknown(f"no memory reading for {readings.system or 'this system'}")


def _unknown(why: str) -> MachineMemory:
    return MachineMemory("unknown", None, None, why, "none")


def _run(command: list[str]) -> str | None:
    """A command's stdout, or None when it is missing, fails or hangs."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def read_machine() -> MachineReadings:
    """Ask this machine (imports mlx to learn whether it trains on a GPU)."""
    import mlx.core as mx

    system = platform.system()
    device = str(mx.default_device())
    meminfo_path = Path("/proc/meminfo")
    return MachineReadings(
        system=system,
        mlx_device=device,
        hw_memsize=_run(["sysctl", "-n", "hw.memsize"]) if system == "Darwin" else None,
        nvidia_smi=(_run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"])
                    if "gpu" in device.lower() and system != "Darwin" else None),
        meminfo=meminfo_path.read_text(encoding="utf-8") if meminfo_path.is_file() else None,
    )


def detect_memory() -> MachineMemory:
    """This machine's :class:`MachineMemory`."""
    return machine_memory(read_machine())
