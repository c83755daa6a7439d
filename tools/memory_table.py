"""The README's memory table: each preset of the real base models, its settings and estimated peak.

Estimates come from the pre-flight estimator (charlora.train.memory) with the real models' sizes from
mflux's registry (no weight is loaded or downloaded), for 20 square training images at the preset's
resolution, on Metal (attention gradients unfused) and on CUDA (cuDNN's fused attention backward).

    python tools/memory_table.py            # markdown rows for README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from charlora.machine import APPLE_USABLE, GB  # noqa: E402
from charlora.models.geometry import model_sizes  # noqa: E402
from charlora.models.registry import get_base_model  # noqa: E402
from charlora.params import load_params  # noqa: E402
from charlora.train.memory import Backend, estimate_memory, square_workload  # noqa: E402
from charlora.train.presets import nominal_gb, presets_for  # noqa: E402
from charlora.train.settings import resolve_settings  # noqa: E402
from tests.conftest import FIXTURE_PARAMS, params_with  # noqa: E402

MODELS = {"flux2-klein-base-4b": "4B", "flux2-klein-base-9b": "9B"}


def rows() -> list[str]:
    """One markdown row per model and preset."""
    params = load_params(FIXTURE_PARAMS)
    lines = ["| model | preset | settings | estimate, Metal | estimate, CUDA | a Mac of that size gives | measured |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, short in MODELS.items():
        model = get_base_model(name)
        sizes = model_sizes(name, model.mflux_name, None)
        for preset, table in presets_for(name).items():
            settings = resolve_settings(params_with(params, base_model={"name": name}), model, table, preset)
            work = square_workload(20, settings.resolution)
            metal, cuda = (estimate_memory(sizes, settings, work, Backend(device, 2)) for device in ("metal", "cuda"))
            budget = nominal_gb(preset) * APPLE_USABLE
            lines.append(f"| {short} | `{preset}` | {table.describe()} | {metal.total_bytes / GB:.1f} GB | "
                         f"{cuda.total_bytes / GB:.1f} GB | {budget:.0f} GB | no |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
