"""wrn-search: architecture search over Wide Residual Networks with Ray Tune and Optuna.

Heavy modules (torch, ray) load on first use, so ``wrn-search count`` and
``wrn-search space`` start in a fraction of a second. ``status(run_dir)``,
``report(*run_dirs, out=None)`` and ``export_trials(run_dir, ...)`` are what ``wrn-search status``,
``report`` and ``export`` do.
"""

from __future__ import annotations

import importlib

from wrn_search.network.spec import WRNSpec

__version__ = "0.1.0"

#: Name -> the module that defines it, imported on first use.
_LAZY = {
    "build_model": "network.model",
    "WideResNet": "network.model",
    "status": "runs.status",
    "report": "dashboards.report",
    "export_trials": "runs.export",
}

__all__ = ["WRNSpec", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
