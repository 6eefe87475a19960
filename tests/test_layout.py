"""The layout shows the architecture: each layer imports only the layers below it, and the search core
(spaces, budgets, tables, the simulator, the searcher and the schedulers) imports without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wrn_search

PACKAGE = Path(wrn_search.__file__).parent

#: Lowest first; a module may import its own layer and those before it (README, "Layout").
LAYERS = ("base", "network", "training", "spaces", "runs", "search", "simulation", "dashboards", "cli")
#: Modules of the base layer (everything else is named by its sub-package).
BASE = {"wrn_search", "wrn_search.errors", "wrn_search.checks", "wrn_search.pareto", "wrn_search.records", "wrn_search.plain",
        "wrn_search.compat"}
#: The package's front: ``wrn_search`` re-exports the public API (lazily but for WRNSpec) and ``__main__`` runs
#: the CLI; lower layers import the package only for its ``__version__``.
FRONT = {"wrn_search", "wrn_search.__main__"}

#: What `wrn-search simulate` and `space` load: none of it may import torch.
TORCH_FREE = ("wrn_search.spaces.space", "wrn_search.spaces.budget", "wrn_search.simulation.table",
              "wrn_search.simulation.simulate", "wrn_search.search.searcher", "wrn_search.search.samplers",
              "wrn_search.search.schedulers", "wrn_search.search.warmstart", "wrn_search.runs.results",
              "wrn_search.cli.simulate", "wrn_search.cli.space")

#: Raises ImportError for torch and every torch submodule, as if torch were not installed.
BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked: this module must not import torch")
sys.meta_path.insert(0, NoTorch())
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    return module.split(".")[1]


def imported(path: Path) -> set[str]:
    """Every wrn_search module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wrn_search"):
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            package = module_name(path).split(".")
            package = package[: len(package) - node.level + (path.name == "__init__.py")]
            names.add(".".join(package + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("wrn_search"))
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))
LAYERED = [path for path in MODULES if module_name(path) not in FRONT]


def test_every_module_belongs_to_a_layer():
    assert {layer(module_name(path)) for path in LAYERED} <= set(LAYERS)


@pytest.mark.parametrize("path", LAYERED, ids=lambda path: module_name(path))
def test_no_module_imports_a_layer_above_its_own(path):
    own = LAYERS.index(layer(module_name(path)))
    above = sorted(name for name in imported(path) if LAYERS.index(layer(name)) > own)
    assert not above, f"{module_name(path)} ({LAYERS[own]}) imports {above}"


def test_the_search_core_imports_without_torch():
    code = BLOCK_TORCH + "".join(f"import {module}\n" for module in TORCH_FREE)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_space_and_simulate_run_without_torch(tmp_path):
    """The two commands that never train start without torch: ``space`` and a whole simulated search."""
    code = BLOCK_TORCH + (
        "from wrn_search.cli import main\n"
        "assert main(['space', 'digits-wrn']) == 0\n"
        f"assert main(['simulate', 'digits-wrn', '--table', 'digits-wrn', '--samples', '12', '--workers', '2', "
        f"'--name', 'sim', '--storage-path', {str(tmp_path)!r}]) == 0\n"
        "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "sim" / "report.html").is_file()


def test_every_sampler_and_scheduler_a_space_may_name_has_one_builder():
    """The schema lists the names (checked without Ray); the registries build them: the same keys."""
    from wrn_search.search.samplers import SAMPLER_BUILDERS
    from wrn_search.search.schedulers import SCHEDULER_BUILDERS
    from wrn_search.spaces.schema import SAMPLERS, SCHEDULERS

    assert tuple(SAMPLER_BUILDERS) == SAMPLERS and tuple(SCHEDULER_BUILDERS) == SCHEDULERS


def test_every_module_imports():
    """A name moved without its importers following fails here, not in the one command that imports it."""
    code = ("import importlib, pkgutil, wrn_search\n"
            "for module in pkgutil.walk_packages(wrn_search.__path__, 'wrn_search.'):\n"
            "    if not module.name.endswith('__main__'):\n"
            "        importlib.import_module(module.name)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
