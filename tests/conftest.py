"""Fixtures shared by the test modules, and the fast loop.

``pytest -m "not slow"`` leaves out every test marked ``slow``: those that start Ray (any test
using :func:`local_ray` is marked here), run a search or kill one; ``pytest`` runs them all.
"""

from __future__ import annotations

import pytest
import ray
import torch
from search_helpers import start_local_ray

from wrn_search.training.data import Dataset, load_dataset


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "local_ray" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs for the module's tests, on 127.0.0.1 only, as wrn-search starts one."""
    start_local_ray()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared, busy CI machine two OpenMP threads can run 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cuda_visible(monkeypatch):
    """As on a GPU machine: device "auto" would train on CUDA, whose cuDNN kernels need not repeat bit for bit."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
