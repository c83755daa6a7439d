"""One honest progress display: rates and ETAs from measured items only, warm-ups apart, others silenced."""

from __future__ import annotations

import sys

import pytest

from charlora.progress import Progress, duration, silenced


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_warmup_is_reported_apart_and_left_out_of_the_rate(capsys):
    clock = Clock()
    progress = Progress("train", 26, "step", clock=clock, min_interval=0)
    with progress.warmup("encoding 13 images"):
        clock.now += 88.0  # mflux encoding the training images: no step
    clock.now += 0.2
    progress.advance("loss 0.5000")
    clock.now += 0.1
    progress.advance("loss 0.4000")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train: encoding 13 images ..."
    assert lines[1] == "train: encoding 13 images: 88 s"
    assert lines[2] == "train: step 1/26  loss 0.5000  0.20 s/step  ETA 5.0 s"  # not 88.2 s/step
    assert lines[3] == "train: step 2/26  loss 0.4000  0.15 s/step  ETA 3.6 s"
    assert progress.seconds_per_item() == pytest.approx(0.15)


def test_time_before_start_is_not_a_step_and_a_resumed_run_counts_from_its_step(capsys):
    clock = Clock()
    progress = Progress("train", 120, "step", done=40, clock=clock, min_interval=0)
    clock.now += 30.0  # loading, encoding
    progress.start()
    clock.now += 2.0
    progress.advance()
    assert capsys.readouterr().out == "train: step 41/120  2.00 s/step  ETA 2 min 38 s\n"


def test_seconds_given_by_the_caller_and_skip_first(capsys):
    clock = Clock()
    progress = Progress("train", 3, "encoding image", "image", clock=clock, min_interval=0)
    clock.now += 50.0  # model loading before the first encode: timed by the caller, not here
    progress.advance(seconds=6.0)
    clock.now += 5.0
    progress.advance(seconds=4.0)
    assert progress.seconds_per_item(skip_first=True) == 4.0 and progress.seconds_per_item() == 5.0
    assert capsys.readouterr().out.splitlines()[0] == "train: encoding image 1/3  6.00 s/image  ETA 12 s"


def test_lines_are_throttled_but_the_first_and_last_always_shown(capsys):
    clock = Clock()
    progress = Progress("preprocess", 5, "image", clock=clock, min_interval=1.0)
    for _ in range(5):
        clock.now += 0.3
        progress.advance()
    shown = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()]
    assert shown == ["preprocess: image 1/5", "preprocess: image 5/5"]


def test_duration_format():
    assert [duration(s) for s in (0.42, 45, 185, 7800)] == ["0.4 s", "45 s", "3 min 05 s", "2 h 10 min"]


def test_silenced_hides_other_output_keeps_ours_and_passes_problems_to_stderr(capsys):
    from tqdm import tqdm

    progress = Progress("evaluate", 1, "image", min_interval=0)
    with silenced():
        print("📦 Loading 1 LoRA file(s)...")
        print("   ✅ Applied to 14 layers")
        for _ in tqdm(range(3)):
            pass
        print("❌ Could not find target path: x")
        progress.advance("p01")
        print("warning on stderr", file=sys.stderr)
    captured = capsys.readouterr()
    assert captured.out == "evaluate: image 1/1  p01  " + captured.out.split("p01  ")[1]
    assert "Loading" not in captured.out and "Applied" not in captured.out
    assert "it/s" not in captured.err and "%|" not in captured.err
    assert "warning on stderr" in captured.err and "❌ Could not find target path: x" in captured.err
    for _ in tqdm(range(2)):  # tqdm works again afterwards
        pass
    assert "2/2" in capsys.readouterr().err
