"""Small search spaces and a local Ray for the search tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import ray
import yaml

from wrn_search.runs.layout import RunManifest
from wrn_search.runs.storage import open_storage
from wrn_search.search.cluster import LOOPBACK, loopback_kept

#: A simulated cluster node of ``ray.cluster_utils.Cluster`` on loopback only (Ray's default is every interface).
LOOPBACK_NODE = {"node_ip_address": LOOPBACK, "include_dashboard": False}


def start_local_ray(num_cpus: int = 2) -> None:
    """A local Ray on 127.0.0.1 only, as wrn-search starts one; the caller shuts it down."""
    with loopback_kept():
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR", _node_ip_address=LOOPBACK)


def study_of(run_dir) -> optuna.Study:
    """The run's study, opened the way a user would from run.json."""
    manifest = RunManifest.load(run_dir)
    return optuna.load_study(study_name=manifest.study_name, storage=open_storage(manifest.storage))


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    """``wrn-search ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "wrn_search", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def write_space(directory: Path, name: str = "tiny.yaml", **sections) -> Path:
    """A digits space of very small nets (a trial trains in about a second) with ``sections`` merged in."""
    document = {
        "dimensions": {"depth": {"min": 10, "max": 16}, "widen_factor": {"min": 1, "max": 2},
                       "block_types": ["B(3,3)", "B(3,1)"]},
        "dataset": {"name": "digits"},
        "training": {"epochs": 3, "batch_size": 128},
        "budget": {"max_params": 150_000},
        "search": {"objectives": ["val_error", "params"], "sampler": "random", "samples": 6,
                   "max_concurrent": 2, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus_per_trial": 1},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(document.get(section), dict):
            document[section] = {**document[section], **values}
        else:
            document[section] = values
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds, or fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


#: One net, three learning rates, 3 epochs, MO-ASHA's rung at epoch 1: the slow rates are stopped there.
LEARNING_RATES = {
    "architectures": ["WRN-10-1"],
    "dimensions": {"lr": [0.1, 0.002, 0.0005]},
    "dataset": {"name": "digits"},
    "training": {"epochs": 3, "batch_size": 128},
    "search": {"objectives": ["val_error", "params"], "sampler": "random", "scheduler": "moasha", "samples": 12,
               "max_concurrent": 1, "grace_period": 1, "reduction_factor": 2, "seed": 0},
    "resources": {"cpus_per_trial": 1},
}


def write_document(path: Path, document: dict) -> Path:
    """A whole space document written as YAML to ``path``."""
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
