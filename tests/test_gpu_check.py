"""benchmarks/gpu_check.py without a GPU: it skips cleanly, and a failing section does not stop the others."""

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import gpu_check  # noqa: E402

SCRIPT = Path(gpu_check.__file__)


def test_without_cuda_it_says_skipped_and_exits_0():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert (done.returncode, done.stdout) == (0, "skipped: no CUDA\n"), done.stderr


def test_it_covers_every_section_of_issue_17():
    assert [name for name, _ in gpu_check.SECTIONS] == [
        "environment", "train", "memory", "out_of_memory", "checkpoint", "compile", "ray", "train_step"]


def test_a_failing_section_is_reported_and_the_next_one_runs(capsys):
    def broken(emit):
        emit("before", value=1, ok=True)
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    def fine(emit):
        emit("measured", images_per_s=10.0, ok=True)

    assert not gpu_check.run_sections([("broken", broken), ("fine", fine)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line for line in lines if line.get("observation") != "seconds"] == [
        {"section": "broken", "observation": "before", "value": 1, "ok": True},
        {"section": "broken", "error": "RuntimeError: CUDA error: an illegal memory access was encountered"},
        {"section": "fine", "observation": "measured", "images_per_s": 10.0, "ok": True},
    ]
    assert [line["section"] for line in lines if line.get("observation") == "seconds"] == ["broken", "fine"]


def test_a_false_check_fails_the_run_and_observations_alone_do_not(capsys):
    assert gpu_check.run_sections([("info", lambda emit: emit("versions", torch="2.14"))])
    assert not gpu_check.run_sections([("check", lambda emit: emit("peak", ok=False))])
    capsys.readouterr()
