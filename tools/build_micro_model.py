"""Build the micro FLUX.2 Klein model and micro CLIP that ship in models/micro/ (make micro-model).

    python tools/build_micro_model.py [--out models/micro] [--work build/micro] [--quick]

About 4.5 hours on a 2-core CPU; each phase resumes from its checkpoint in --work after an
interruption (delete --work to start over). --quick runs every phase for a few steps (tests).
Deterministic from the recipe's seeds on one machine (torch on the CPU with a fixed thread count).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charlora import mlx_runtime  # noqa: E402  (before mlx is imported anywhere)

mlx_runtime.prepare()

from charlora.models.micro.build import PHASES, build, quick  # noqa: E402
from charlora.models.micro.recipe import RECIPE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/micro"), help="where the shipped files go")
    parser.add_argument("--work", type=Path, default=Path("build/micro"), help="checkpoints and full-precision weights")
    parser.add_argument("--sheet", type=Path, default=Path("docs/micro_samples.png"), help="world vs model contact sheet")
    parser.add_argument("--quick", action="store_true", help="a few steps per phase: checks the code path, not the model")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated, in order (default: all: {','.join(PHASES)}); transformer and decoder "
                             "are independent and may run in two processes at once")
    args = parser.parse_args()
    recipe = quick(RECIPE) if args.quick else RECIPE
    started = time.perf_counter()

    def report(message: str) -> None:
        print(f"micro-model [{(time.perf_counter() - started) / 60:5.1f} min] {message}", flush=True)

    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; the phases are {', '.join(PHASES)}")
    manifest = build(recipe, args.out, args.work, report, phases, None if args.quick else args.sheet)
    if manifest:
        report(f"done: {args.out}; figures:\n{json.dumps(manifest['figures'], indent=2)}")


if __name__ == "__main__":
    main()
