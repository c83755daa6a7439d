"""export: the best and final LoRA in other tools' formats, each verified -> models/export/, metrics/export.json.

As a dvc stage (no arguments) it exports models/lora/<character>-best.safetensors and
<character>.safetensors in `export.formats`. With --lora (make export LORA=...) it converts any
FLUX.2 Klein LoRA (mflux, diffusers, ComfyUI/BFL or kohya keys) into the other formats, with the
same checks, into exports/.
"""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
import argparse
from pathlib import Path

from charlora import layout
from charlora.cli import log, reporter, run_stage
from charlora.lora.export import export_any, export_pipeline_adapters
from charlora.lora.formats import FORMATS
from charlora.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora", type=Path, help="convert this LoRA instead of the pipeline's (make export LORA=...)")
    parser.add_argument("--formats", help=f"comma-separated, from {', '.join(FORMATS)} (default: all but the input's)")
    parser.add_argument("--base-model", default="auto", help="the base model it was trained on (default: from its shapes)")
    parser.add_argument("--out-dir", type=Path, default=Path("exports"), help="where converted files go (default: exports/)")
    args = parser.parse_args()
    params = load_params()
    if args.lora is None:
        files = export_pipeline_adapters(params, reporter("export"))
        log("export", f"{len(files)} verified files in {layout.EXPORT_DIR}; "
                      f"report: {layout.EXPORT_DIR / layout.EXPORT_REPORT_NAME}, metrics: metrics/export.json")
    else:
        files, report = export_any(args.lora, args.formats, args.base_model, args.out_dir, params.tiny_model,
                                   reporter("export"))
        log("export", f"done: {', '.join(str(f.path) for f in files)}; report: {report}")


if __name__ == "__main__":
    run_stage("export", main)
