"""mlx's CPU JIT through charlora/mlx_jit/g++: a kernel appears in the shared cache whole, or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from charlora.mlx_runtime import JIT_COMPILER_DIR, guard_jit_cache
from tests.conftest import ROOT

WRAPPER = JIT_COMPILER_DIR / "g++"


def stand_in_compiler(folder: Path, body: str) -> Path:
    """A shell script in the place of the real g++: ``out`` is the file after -o, ``calls`` counts the runs."""
    script = folder / "cxx"
    script.write_text('#!/bin/sh\nout=; prev=\nfor arg do [ "$prev" = "-o" ] && out=$arg; prev=$arg; done\n'
                      f'echo "$out" >> "{folder}/calls"\n{body}\n')
    script.chmod(0o755)
    return script


def run_wrapper(compiler: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(WRAPPER), "-O3", "kernel.cpp", "-o", str(target)], capture_output=True, text=True,
                          env={**os.environ, "CHARLORA_JIT_CXX": str(compiler)}, timeout=60)


def test_a_library_being_written_is_never_seen_at_its_final_name(tmp_path):
    compiler = stand_in_compiler(tmp_path, 'printf first-half > "$out"; sleep 1; printf second-half >> "$out"')
    target = tmp_path / "libkernel.so"
    seen = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if target.exists():
                seen.append(target.read_text())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_wrapper(compiler, target)
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "first-halfsecond-half"
    assert set(seen) <= {"first-halfsecond-half"}, "only the whole library ever stood at the final name"
    written = (tmp_path / "calls").read_text().split()
    assert written == [f"{target}.{written[0].rsplit('.', 2)[1]}.part"], "the compiler wrote to a private name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls", "cxx", "libkernel.so"], "nothing left behind"


def test_a_failed_compile_is_tried_again_and_a_real_error_still_fails(tmp_path):
    flaky = stand_in_compiler(tmp_path, f'[ "$(wc -l < {tmp_path}/calls)" -ge 3 ] || exit 1\nprintf lib > "$out"')
    assert run_wrapper(flaky, tmp_path / "libflaky.so").returncode == 0
    assert (tmp_path / "libflaky.so").read_text() == "lib"
    assert len((tmp_path / "calls").read_text().split()) == 3, "failed twice, then compiled"

    (tmp_path / "calls").unlink()
    broken = stand_in_compiler(tmp_path, 'echo "kernel.cpp:1: error: expected ;" >&2; exit 1')
    result = run_wrapper(broken, tmp_path / "libbroken.so")
    assert result.returncode != 0 and "expected ;" in result.stderr
    assert len((tmp_path / "calls").read_text().split()) == 3
    assert not list(tmp_path.glob("libbroken*")), "no library and no part left behind"


def test_guard_puts_the_wrapper_first_once_and_calls_the_real_compiler(monkeypatch, tmp_path):
    if sys.platform != "linux":
        pytest.skip("mlx's JIT through g++ is the Linux CPU's")
    fake = stand_in_compiler(tmp_path, "").rename(tmp_path / "g++")
    monkeypatch.delenv("CHARLORA_JIT_CXX", raising=False)  # the guard sets it: put back after the test
    monkeypatch.setenv("PATH", os.pathsep.join([str(JIT_COMPILER_DIR), str(tmp_path), "/usr/bin"]))
    assert guard_jit_cache() == str(fake)
    assert guard_jit_cache() == str(fake)
    entries = os.environ["PATH"].split(os.pathsep)
    assert entries[:2] == [str(JIT_COMPILER_DIR), str(tmp_path)] and entries.count(str(JIT_COMPILER_DIR)) == 1
    assert os.environ["CHARLORA_JIT_CXX"] == str(fake)


def test_another_copys_wrapper_on_path_is_never_taken_for_the_real_compiler(monkeypatch, tmp_path):
    """A project copy's stage, started from this project's process, inherits this wrapper on PATH: the real g++
    is still the one after every wrapper (a wrapper calling a wrapper would call itself for ever)."""
    if sys.platform != "linux":
        pytest.skip("mlx's JIT through g++ is the Linux CPU's")
    other_copy = tmp_path / "copy" / "charlora" / "mlx_jit"
    other_copy.mkdir(parents=True)
    (other_copy / "g++").write_bytes(WRAPPER.read_bytes())
    (other_copy / "g++").chmod(0o755)
    real = stand_in_compiler(tmp_path, "").rename(tmp_path / "g++")
    monkeypatch.delenv("CHARLORA_JIT_CXX", raising=False)  # the guard sets it: put back after the test
    monkeypatch.setenv("PATH", os.pathsep.join([str(other_copy), str(tmp_path)]))
    assert guard_jit_cache() == str(real)
    assert os.environ["PATH"].split(os.pathsep) == [str(JIT_COMPILER_DIR), str(tmp_path)]
    looping = subprocess.run([str(WRAPPER), "--version"], env={**os.environ, "CHARLORA_JIT_CXX": str(other_copy / "g++")},
                             capture_output=True, text=True, timeout=10)
    assert looping.returncode != 0 and "is a wrapper" in looping.stderr


MLX_KERNEL = """
import sys
sys.path.insert(0, {root!r})
import charlora  # guards mlx's JIT cache (Linux)
import mlx.core as mx

gelu = mx.compile(lambda x: x * mx.sigmoid(1.702 * x) + mx.exp(-x * x) * 0.25)
print(float(gelu(mx.arange(64, dtype=mx.float32) / 7).sum()))
"""


@pytest.mark.slow
def test_two_processes_compiling_the_same_kernel_on_a_cold_cache_both_load_it(tmp_path):
    """Two mlx processes that need the same new fused kernel at once, with an empty JIT cache (TMPDIR): both
    compute the same figure, the real compiler wrote private names only, and the cache holds whole libraries."""
    if sys.platform != "linux":
        pytest.skip("mlx's JIT through g++ is the Linux CPU's")
    logger = tmp_path / "bin" / "g++"
    logger.parent.mkdir()
    real = guard_jit_cache() or pytest.skip("no g++ here: mlx runs without its JIT")
    logger.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/compiles"\nexec "{real}" "$@"\n')
    logger.chmod(0o755)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{logger.parent}{os.pathsep}/usr/bin:/bin"}
    env.pop("CHARLORA_JIT_CXX")
    code = MLX_KERNEL.format(root=str(ROOT))
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    compiles = [line for line in (tmp_path / "compiles").read_text().splitlines() if " -o " in line]
    assert compiles and all(line.split(" -o ")[1].endswith(".part") for line in compiles), compiles
    cache = next((tmp_path / "mlx").glob("*/cpu"))
    assert list(cache.glob("lib*.so")) and not list(cache.glob("*.part"))
