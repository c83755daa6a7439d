"""shots: the character in each shot of story/shots.yaml, with the best LoRA
-> models/shots/<id>.png, models/shots/storyboard.png, metrics/shots.json (only new or changed shots render).

`--remote runware` (make shots REMOTE=runware) renders the same story on Runware with the published LoRA
-> models/shots/runware/, metrics/shots_runware.json.
"""

import _venv  # noqa: F401  (first: re-runs this script with .venv/bin/python when dvc runs outside the venv)
import argparse

from charlora import mlx_runtime

mlx_runtime.prepare()  # before mlx is imported: an optimized BLAS for mlx on a Linux CPU (does nothing elsewhere)

from charlora import layout  # noqa: E402
from charlora.cli import log, reporter, run_stage  # noqa: E402
from charlora.params import load_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--remote", choices=["runware"], help="render on Runware with the published LoRA")
    args = parser.parse_args()
    params = load_params()
    if args.remote == "runware":
        from charlora.publish.credentials import load_credentials
        from charlora.shots.remote import run_remote

        manifest, where = run_remote(params, load_credentials(), reporter("shots")), layout.REMOTE_SHOTS_MANIFEST_FILE
    else:
        from charlora.shots.run import run_local

        mlx_runtime.use_cpu_precision()
        manifest, where = run_local(params), layout.SHOTS_MANIFEST_FILE
    rate = manifest["seconds_per_image"]
    log("shots", f"{manifest['shots_total']} shot(s): {manifest['rendered']} rendered"
                 + (f" ({rate:.2f} s/image)" if rate is not None else "")
                 + f", {manifest['from_cache']} from the cache; storyboard {manifest['storyboard']}; manifest {where}")


if __name__ == "__main__":
    run_stage("shots", main)
