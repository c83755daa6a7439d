"""mlx on a Linux CPU at a usable speed: an optimized BLAS and float32 compute.

The ``mlx[cpu]`` wheel for Linux links the reference (netlib) BLAS, which multiplies matrices at
about 6 GFLOP/s on this project's 2-core CI machine; mflux's transformer and its VAE's convolutions
(im2col + GEMM) then spend nearly all their time there. mlx calls ``cblas_sgemm`` through the dynamic
linker, so an optimized BLAS loaded first into the global symbol scope takes those calls: the OpenBLAS
that the pinned ``opencv-python`` wheel already ships (about 70 GFLOP/s here, 12x). mlx has no fast
bfloat16 matrix multiply on the CPU (it does not go through BLAS), so on the CPU mflux computes in
float32 (``ModelConfig.precision``), which is also what a model that small wants.

:func:`prepare` must run before the first ``import mlx.core`` of the process; the stage scripts,
the tests and the tools call it first thing. Elsewhere (Metal on a Mac, CUDA) it does nothing. Set
``CHARLORA_MLX_BLAS=reference`` to keep mlx's own BLAS (the benchmark compares both).

On Linux it also puts ``charlora/mlx_jit/g++`` first on ``PATH``: mlx's CPU JIT compiles fused kernels
with ``g++`` into a cache that every process shares, and a process that finds a kernel another one is
still writing fails to load it; the wrapper makes each kernel appear whole (:func:`guard_jit_cache`).
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import shutil
import sys
from pathlib import Path

_STATE: dict[str, str | None] = {"blas": None}
JIT_COMPILER_DIR = Path(__file__).resolve().parent / "mlx_jit"  # holds the g++ that mlx's CPU JIT finds first


def _openblas_path() -> str | None:
    """The OpenBLAS shared library that ships inside opencv-python's wheel, if there is one."""
    import importlib.util

    spec = importlib.util.find_spec("cv2")
    if spec is None or spec.origin is None:
        return None
    libs = Path(spec.origin).resolve().parents[1] / "opencv_python.libs"
    found = sorted(glob.glob(str(libs / "libopenblas*.so*")))
    return found[0] if found else None


def prepare() -> str | None:
    """Load the optimized BLAS for mlx on a Linux CPU (before mlx is imported); return its path or None.

    Also guards mlx's JIT cache on Linux (:func:`guard_jit_cache`). Idempotent. Does nothing on macOS, when mlx is already imported (too late: its BLAS symbols are
    bound), or when ``CHARLORA_MLX_BLAS=reference``.
    """
    if platform.system() != "Linux":
        return None
    guard_jit_cache()
    if _STATE["blas"] is not None:
        return _STATE["blas"]
    if os.environ.get("CHARLORA_MLX_BLAS", "").lower() == "reference" or "mlx.core" in sys.modules:
        return None
    path = _openblas_path()
    if path is not None:
        # One BLAS thread: OpenBLAS's own thread pool spins against torch's OpenMP threads (torch attention
        # ran 30x slower beside it here), and mlx gains nothing from a second BLAS thread at these sizes.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        _STATE["blas"] = path
    return path


def guard_jit_cache() -> str | None:
    """Put ``charlora/mlx_jit/g++`` first on ``PATH`` for mlx's CPU JIT; return the real g++ it calls, or None.

    mlx compiles each fused kernel by running ``g++ ... -o libKERNEL.so`` (through the shell, so ``PATH``
    decides which g++) into ``/tmp/mlx/<version>/cpu``, shared by every process, and loads the library as soon
    as the file exists. Two processes that need a new kernel at once (the prior stage's workers, parallel
    test runs) could load a half-written library and fail with "file too short". The wrapper compiles to a
    private name and renames the finished file into place. Idempotent; inherited by child processes. Without
    a g++ there is nothing to guard: mlx then runs without its JIT.
    """
    # Every folder named mlx_jit is left out when looking for the real g++, not only this one: a project copy
    # started from another one's process inherits that one's wrapper on PATH, which would then call itself.
    entries = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
               if entry and Path(entry).name != JIT_COMPILER_DIR.name]
    real = shutil.which("g++", path=os.pathsep.join(entries))
    if real is None or not os.access(JIT_COMPILER_DIR / "g++", os.X_OK):
        return None
    os.environ["CHARLORA_JIT_CXX"] = real
    os.environ["PATH"] = os.pathsep.join([str(JIT_COMPILER_DIR), *entries])
    return real


def use_cpu_precision() -> None:
    """On the CPU, compute in float32: mlx's bfloat16 matmul there is unaccelerated and slower."""
    import mlx.core as mx
    from mflux.models.common.config.model_config import ModelConfig

    if mx.default_device() == mx.cpu:
        ModelConfig.precision = mx.float32


def describe() -> dict[str, str | None]:
    """What mlx runs on here, for metrics: device, BLAS and compute precision."""
    import mlx.core as mx
    from mflux.models.common.config.model_config import ModelConfig

    return {"mlx_device": str(mx.default_device()), "mlx_blas": _STATE["blas"] and Path(_STATE["blas"]).name,
            "compute_precision": str(ModelConfig.precision)}
