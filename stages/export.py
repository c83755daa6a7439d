"""export: the best and final LoRA in other tools' formats, each verified -> models/export/, metrics/export.json.

As a dvc stage (no arguments) it exports models/lora/<character>-best.safetensors and
<character>.safetensors in `export.formats`. With --lora (make export LORA=...) it converts any
FLUX.2 Klein LoRA (mflux, diffusers, ComfyUI/BFL or kohya keys) into the other formats, with the
same checks, into exports/.
"""

import argparse
from pathlib import Path

from charlora import layout
from charlora.cli import log, run_stage
from charlora.errors import PipelineError
from charlora.export import base_geometry, export_adapter, failures, guess_base_model, metrics_for, report_for
from charlora.fileio import staged_dir, write_json
from charlora.lora_formats import FORMATS, normalise_format, read_lora
from charlora.params import load_params


def _report(message: str) -> None:
    log("export", message)


def export_pipeline_adapters() -> None:
    params = load_params()
    name = params.character.name
    geometry = base_geometry(params.base_model.name, params.tiny_model)
    sources = {"best": layout.LORA_DIR / f"{name}-best.safetensors", "final": layout.LORA_DIR / f"{name}.safetensors"}
    for source in sources.values():
        if not source.is_file():
            raise PipelineError(f"{source} is missing. Run the pipeline up to evaluate first: dvc repro evaluate.")
    results = {}
    with staged_dir(layout.EXPORT_DIR) as staging:
        for role, source in sources.items():
            results[role] = export_adapter(source, staging, source.stem, params.export.formats, geometry,
                                           lambda message: _report(message.replace(str(staging), str(layout.EXPORT_DIR))))
            for result in results[role]:  # the report names the files where they end up
                result.path = layout.EXPORT_DIR / result.path.name
        write_json(layout.METRICS_DIR / "export.json", metrics_for(results))
        _finish(results, staging / layout.EXPORT_REPORT_NAME)
    log("export", f"{sum(len(r) for r in results.values())} verified files in {layout.EXPORT_DIR}; "
                  f"report: {layout.EXPORT_DIR / layout.EXPORT_REPORT_NAME}, metrics: metrics/export.json")


def export_any(lora: Path, formats: str | None, base: str, out_dir: Path) -> None:
    params = load_params()
    original = read_lora(lora)
    wanted = [normalise_format(f) for f in formats.split(",")] if formats else [
        f for f in FORMATS if f != original.source_format]
    base_model = guess_base_model(original, params.tiny_model, lora) if base == "auto" else base
    log("export", f"{lora}: {original.source_format} keys, {len(original.layers)} layers, base model {base_model}")
    results = {"input": export_adapter(lora, out_dir, lora.stem, wanted, base_geometry(base_model, params.tiny_model),
                                       _report)}
    report = out_dir / f"{lora.stem}.export.json"
    _finish(results, report)
    log("export", f"done: {', '.join(str(r.path) for r in results['input'])}; report: {report}")


def _finish(results: dict, report_path: Path) -> None:
    write_json(report_path, report_for(results))
    problems = [message for role in results.values() for message in failures(role)]
    if problems:
        raise PipelineError("export verification failed, the failing files were deleted:\n  " + "\n  ".join(problems)
                            + "\nThis is a bug in the converter; please report it with the LoRA file.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora", type=Path, help="convert this LoRA instead of the pipeline's (make export LORA=...)")
    parser.add_argument("--formats", help=f"comma-separated, from {', '.join(FORMATS)} (default: all but the input's)")
    parser.add_argument("--base-model", default="auto", help="the base model it was trained on (default: from its shapes)")
    parser.add_argument("--out-dir", type=Path, default=Path("exports"), help="where converted files go (default: exports/)")
    args = parser.parse_args()
    if args.lora is None:
        export_pipeline_adapters()
    else:
        export_any(args.lora, args.formats, args.base_model, args.out_dir)


if __name__ == "__main__":
    run_stage("export", main)
