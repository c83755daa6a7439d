"""export: an adapter in the formats other tools load, each file verified before it is kept.

For every format: convert (:mod:`charlora.lora.formats`), write, read the written file back and
compare every layer's delta with the original, then load it with diffusers' FLUX.2 LoRA loader
(:mod:`charlora.lora.verify`). A file that fails a check is deleted and the run fails, so
``models/export`` only ever holds verified files. :func:`export_pipeline_adapters` is the stage;
:func:`export_any` converts a LoRA from elsewhere (``make export LORA=...``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlora import layout
from charlora.errors import PipelineError
from charlora.fileio import sha256_file, staged_dir, write_json
from charlora.lora.formats import Lora, read_lora, write_lora
from charlora.lora.keys import FORMATS, normalise_format
from charlora.lora.verify import DeltaCheck, DiffusersCheck, check_deltas, check_with_diffusers
from charlora.models.flux2_layers import USED_BY
from charlora.models.geometry import layer_shape, transformer_geometry
from charlora.models.registry import BASE_MODELS, TINY, get_base_model
from charlora.params import Params, TinyModelParams

# Formats diffusers' FLUX.2 loader reads (mflux keys are not among them: `attn.to_out` vs `attn.to_out.0`).
DIFFUSERS_LOADABLE = ("diffusers", "comfyui", "kohya")


@dataclass
class ExportedFile:
    """One written export and the results of its checks."""

    source: Path
    format: str
    path: Path
    delta: DeltaCheck
    diffusers: DiffusersCheck | None
    sha256: str = ""
    size: int = 0
    source_sha256: str = ""

    @property
    def verified(self) -> bool:
        return self.delta.ok and (self.diffusers is None or self.diffusers.ok)

    def summary(self) -> dict[str, Any]:
        """One entry of models/export/report.json: the file, its source and every check's details."""
        row: dict[str, Any] = {"file": str(self.path), "sha256": self.sha256, "size": self.size,
                               "source": str(self.source), "source_sha256": self.source_sha256, "keys": self.delta.keys,
                               "layers": self.delta.layers, "max_delta_error": self.delta.max_abs_error,
                               "max_abs_delta": self.delta.max_abs_delta, "delta_ok": self.delta.ok,
                               "loaded_by_diffusers": None if self.diffusers is None else self.diffusers.ok,
                               "verified": self.verified}
        if self.diffusers is not None:
            row["diffusers"] = self.diffusers.as_dict()
        return row


def base_geometry(base_model: str, tiny: TinyModelParams, model_path: str | Path | None = None) -> dict[str, Any]:
    """The transformer geometry of ``base_model`` (the tiny model's from its params, the micro model's from its folder)."""
    from charlora.models.loading import model_config

    spec = get_base_model(base_model)
    model_config(spec.name, tiny, model_path)
    return transformer_geometry(spec.mflux_name)


def mismatches(lora: Lora, geometry: dict[str, Any]) -> list[str]:
    """Layers of ``lora`` that a model of ``geometry`` does not have, or has with another shape."""
    problems = []
    blocks = {"transformer_blocks": geometry["num_layers"], "single_transformer_blocks": geometry["num_single_layers"]}
    for path, layer in lora.layers.items():
        kind, index = path.split(".")[:2]
        if int(index) >= blocks[kind]:
            problems.append(f"{path} (the model has {blocks[kind]} {kind})")
        elif (int(layer.up.shape[0]), int(layer.down.shape[1])) != layer_shape(path, geometry):
            problems.append(f"{path} is {tuple(layer.up.shape[:1]) + tuple(layer.down.shape[1:])}, "
                            f"the model's is {layer_shape(path, geometry)}")
    return problems


def guess_base_model(lora: Lora, tiny: TinyModelParams, source: Path) -> str:
    """The base model whose layers ``lora`` fits (for adapters from elsewhere)."""
    geometries = {}
    for name in BASE_MODELS:
        try:
            geometries[name] = base_geometry(name, tiny)
        except PipelineError:  # an embedded model that is not installed here (dvc repro base_model) cannot match
            continue
        if not mismatches(lora, geometries[name]):
            return name
    first = next(iter(geometries))
    raise PipelineError(f"{source}: fits none of the known FLUX.2 Klein base models ({', '.join(geometries)}): "
                        f"{mismatches(lora, geometries[first])[:2]}. Is it a FLUX.2 Klein LoRA?")


def export_adapter(source: Path, out_dir: Path, stem: str, formats: list[str], geometry: dict[str, Any],
                   report: Callable[[str], None]) -> list[ExportedFile]:
    """Write ``source`` in each of ``formats`` to ``out_dir/<stem>.<format>.safetensors`` and verify each file."""
    original = read_lora(source)
    problems = mismatches(original, geometry)
    if problems:
        raise PipelineError(f"{source} does not fit the base model's layers: {'; '.join(problems[:3])}"
                            f"{f' and {len(problems) - 3} more' if len(problems) > 3 else ''}. Was it trained on another "
                            "base model? Set base_model.name (or BASE= for make export) to the model it was trained on.")
    results = []
    source_sha256 = sha256_file(source)
    for fmt in [normalise_format(f) for f in formats]:
        path = out_dir / f"{stem}.{fmt}.safetensors"
        tensors = write_lora(original, fmt, path)
        written = read_written(path)
        if set(written) != set(tensors):
            raise PipelineError(f"{path}: the file does not hold the tensors just written; is the disk full?")
        delta = check_deltas(original, written, fmt, str(path))
        diffusers = check_with_diffusers(path, original, geometry) if fmt in DIFFUSERS_LOADABLE else None
        result = ExportedFile(source, fmt, path, delta, diffusers, sha256_file(path), path.stat().st_size, source_sha256)
        results.append(result)
        loaded = "" if diffusers is None else f", diffusers: {'loaded, all layers match' if diffusers.ok else 'FAILED'}"
        report(f"{path}: {fmt}, {delta.keys} keys, max delta error {delta.max_abs_error:.2e}{loaded}")
        if not result.verified:
            path.unlink()
    return results


def read_written(path: Path) -> dict:
    """The tensors of a written file, read back with safetensors."""
    from safetensors.torch import load_file

    return load_file(str(path))


def failures(results: list[ExportedFile]) -> list[str]:
    """What went wrong with each unverified file, in words."""
    messages = []
    for result in results:
        if result.verified:
            continue
        reasons = []
        if not result.delta.ok:
            reasons.append(f"its deltas differ from the original by up to {result.delta.max_abs_error:.3g}")
        check = result.diffusers
        if check is not None and not check.ok:
            if not check.loaded:
                reasons.append(f"diffusers could not load it ({check.error})")
            for label, values in (("layers missing", check.missing), ("unexpected layers", check.unexpected),
                                  ("loader warnings", check.warnings)):
                if values:
                    reasons.append(f"{label} in diffusers: {values[:3]}")
            if check.loaded and not (check.missing or check.unexpected or check.warnings):
                reasons.append(f"diffusers applied different deltas (max error {check.max_abs_error}, output change "
                               f"{check.output_change}, output error {check.output_error})")
        messages.append(f"{result.format} export of {result.source}: " + "; ".join(reasons))
    return messages


def metrics_for(results: dict[str, list[ExportedFile]]) -> dict[str, Any]:
    """metrics/export.json: the numbers `dvc exp show` lists, per adapter and format."""
    metrics: dict[str, Any] = {role: {r.format: {"keys": r.delta.keys, "layers": r.delta.layers,
                                                 "max_delta_error": r.delta.max_abs_error,
                                                 "loaded_by_diffusers": None if r.diffusers is None else r.diffusers.ok,
                                                 "verified": r.verified} for r in files}
                               for role, files in results.items()}
    metrics["all_verified"] = all(r.verified for files in results.values() for r in files)
    return metrics


def report_for(results: dict[str, list[ExportedFile]]) -> dict[str, Any]:
    """The full report (models/export/report.json): files, sha256, sources and every check's details."""
    report: dict[str, Any] = {role: {r.format: r.summary() for r in files} for role, files in results.items()}
    report["all_verified"] = all(r.verified for files in results.values() for r in files)
    report["used_by"] = {fmt: USED_BY[fmt] for fmt in sorted({r.format for files in results.values() for r in files})}
    return report


def export_pipeline_adapters(params: Params, report: Callable[[str], None]) -> list[ExportedFile]:
    """The export stage: the best and final adapter in ``export.formats`` into ``models/export``, verified.

    Writes ``metrics/export.json`` and ``models/export/report.json``; raises if a file failed a check.
    """
    name = params.character.name
    geometry = base_geometry(params.base_model.name, params.tiny_model, params.base_model.path)
    sources = {"best": layout.LORA_DIR / f"{name}-best.safetensors", "final": layout.LORA_DIR / f"{name}.safetensors"}
    for source in sources.values():
        if not source.is_file():
            raise PipelineError(f"{source} is missing. Run the pipeline up to evaluate first: dvc repro evaluate.")
    results = {}
    with staged_dir(layout.EXPORT_DIR) as staging:
        for role, source in sources.items():
            results[role] = export_adapter(source, staging, source.stem, params.export.formats, geometry,
                                           lambda message: report(message.replace(str(staging), str(layout.EXPORT_DIR))))
            for result in results[role]:  # the report names the files where they end up
                result.path = layout.EXPORT_DIR / result.path.name
        write_json(layout.METRICS_DIR / "export.json", metrics_for(results))
        _finish(results, staging / layout.EXPORT_REPORT_NAME)
    return [r for files in results.values() for r in files]


def export_any(lora: Path, formats: str | None, base: str, out_dir: Path, tiny: TinyModelParams,
               report: Callable[[str], None]) -> tuple[list[ExportedFile], Path]:
    """Convert a LoRA from elsewhere into ``formats`` (default: all but its own) in ``out_dir``, verified.

    ``base`` is a base model name or ``auto`` (guessed from the layer shapes). Returns the files and the report path.
    """
    original = read_lora(lora)
    wanted = [normalise_format(f) for f in formats.split(",")] if formats else [
        f for f in FORMATS if f != original.source_format]
    base_model = guess_base_model(original, tiny, lora) if base == "auto" else base
    report(f"{lora}: {original.source_format} keys, {len(original.layers)} layers, base model {base_model}")
    results = {"input": export_adapter(lora, out_dir, lora.stem, wanted, base_geometry(base_model, tiny), report)}
    report_path = out_dir / f"{lora.stem}.export.json"
    _finish(results, report_path)
    return results["input"], report_path


def _finish(results: dict[str, list[ExportedFile]], report_path: Path) -> None:
    write_json(report_path, report_for(results))
    problems = [message for role in results.values() for message in failures(role)]
    if problems:
        raise PipelineError("export verification failed, the failing files were deleted:\n  " + "\n  ".join(problems)
                            + "\nThis is a bug in the converter; please report it with the LoRA file.")
