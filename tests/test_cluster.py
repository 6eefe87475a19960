"""Searches on simulated multi-node clusters (``ray.cluster_utils.Cluster``, on 127.0.0.1), and a local Ray's ports."""

from __future__ import annotations

import ipaddress
import os

import pandas as pd
import psutil
import pytest
import ray
from ray.cluster_utils import Cluster
from search_helpers import LOOPBACK_NODE, write_space
from test_search import check_run_is_consistent

from wrn_search.runs.files import read_jsonl
from wrn_search.search.cluster import ray_session
from wrn_search.search.orchestrate import run_search
from wrn_search.spaces.space import load_space

#: Every test here starts Ray nodes (the fast loop, ``pytest -m "not slow"``, leaves them out).
pytestmark = pytest.mark.slow



def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_a_local_ray_listens_on_loopback_only():
    assert not ray.is_initialized()
    with ray_session(None):
        ray.get([ray.remote(lambda: None).remote() for _ in range(2)])  # start workers, which listen too
        ours = {os.getpid()} | {child.pid for child in psutil.Process().children(recursive=True)}
        listening = {(c.pid, c.laddr.ip) for c in psutil.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in ours}
    assert len({pid for pid, _ in listening}) >= 3  # the GCS, the raylet, workers: Ray's ports were seen
    assert all(is_loopback(ip) for _, ip in listening), sorted(listening)


def test_trials_spread_over_two_nodes(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **LOOPBACK_NODE})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    try:
        # Trials long enough that the second node's worker has started (imports torch) before the search ends.
        space = write_space(tmp_path, search={"samples": 6, "scheduler": "none"}, training={"epochs": 15})
        run_dir = run_search(load_space(space), name="cluster", storage_path=str(tmp_path / "runs"),
                             address=cluster.address, verbose=0).run_dir
    finally:
        ray.shutdown()
        cluster.shutdown()
    check_run_is_consistent(run_dir, 15)
    nodes = {record["node_id"] for record in read_jsonl(run_dir / "epochs.jsonl")}
    assert len(nodes) == 2


def test_auto_gpus_pack_small_trials_onto_one_gpu(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 1, **LOOPBACK_NODE})
    try:
        space = write_space(tmp_path, search={"samples": 4, "max_concurrent": 4, "scheduler": "none"},
                            resources={"cpus_per_trial": 1, "gpus_per_trial": "auto"}, training={"epochs": 3})
        run_dir = run_search(load_space(space), name="gpus", storage_path=str(tmp_path / "runs"),
                             address=cluster.address, verbose=0).run_dir
    finally:
        ray.shutdown()
        cluster.shutdown()
    records = pd.DataFrame(read_jsonl(run_dir / "epochs.jsonl"))
    shares = {r["GPU"] for r in records["resources"]}
    assert shares and all(0 < share < 1 for share in shares)
    spans = records.groupby("number")["time"].agg(["min", "max"])
    spans["start"] = spans["min"] - records.groupby("number")["epoch_seconds"].first()
    overlapping = sum(
        1 for a in spans.index for b in spans.index
        if a < b and spans.loc[a, "start"] < spans.loc[b, "max"] and spans.loc[b, "start"] < spans.loc[a, "max"]
    )
    assert overlapping >= 1  # at least two trials held the single GPU at once
