"""What a search hides without ``--verbose``: Optuna's notices about options wrn-search chose, Ray Tune's
start-up box and the tracebacks of failures already told in one line."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

from wrn_search.search.failures import RAY_UNHANDLED_ERRORS_ENV
from wrn_search.search.interrupts import environment

#: Tune's switch between its output engines (``RunConfig.verbose``'s docs). The new one prints a box naming
#: internal classes and a TensorBoard hint with a temporary path even at verbose 0; the old one is silent then.
TUNE_NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """No ExperimentalWarning for the sampler options wrn-search chose, and no "A new study created" line."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


#: Tune's logger of experiment snapshots: a snapshot that fails while a stop signal ends the search is logged
#: with a traceback, and ``resume`` copes with a missing or torn snapshot (wrn_search.search.snapshot).
SNAPSHOT_LOGGER = "ray.tune.execution.experiment_state"


@contextmanager
def ray_quiet() -> Iterator[None]:
    """Without ``--verbose``: no start-up box, no "Unhandled error" tracebacks of trials whose failure is told in
    one line already (wrn_search.search.failures), no traceback of a snapshot a stop interrupted."""
    snapshots = logging.getLogger(SNAPSHOT_LOGGER)
    level = snapshots.level
    snapshots.setLevel(logging.CRITICAL)
    try:
        with environment(TUNE_NEW_OUTPUT_ENV, "0"), environment(RAY_UNHANDLED_ERRORS_ENV, "1"):
            yield
    finally:
        snapshots.setLevel(level)
