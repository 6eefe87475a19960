"""The private Ray and Optuna internals wrn-search relies on, and the versions it was tested with.

The searcher reaches into Ray's ``OptunaSearch`` and ``SearchGenerator`` and into Optuna's
storage, and ``RungTPESampler`` replaces a private method of Optuna's TPE. None of that is
API: a new Ray or Optuna may drop any of it silently. :data:`PRIVATE` lists every such
attribute in one place; these tests fail, naming the attribute and the installed version,
when one is gone, and when the code starts using a private name that is not listed.
"""

from __future__ import annotations

import ast
import importlib
import re
from importlib.metadata import version
from pathlib import Path

import optuna
import pytest
from ray import tune

ROOT = Path(__file__).resolve().parent.parent
#: The package's sources.
SOURCES = [ROOT / "wrn_search"]

#: Every private upstream attribute the code uses, by the class (or module) that has it. A dotted
#: name is a chain (``_rng.rng``). Where: searcher.py (Ray's searchers, Optuna's storage),
#: samplers.py (TPE internals; ``_sample`` is overridden), simulate.py (``Study._storage``).
PRIVATE: dict[str, tuple[str, ...]] = {
    "ray.tune.search.optuna.OptunaSearch": ("_ot_study", "_ot_trials", "_completed_trials"),
    "ray.tune.search.SearchGenerator": ("_finished", "_total_samples"),
    "optuna.Study": ("_storage", "_get_trials", "_study_id"),
    "optuna.Trial": ("_trial_id",),
    # warmstart.py: whether a reused trial's value lies inside the new space's distribution.
    "optuna.distributions.IntDistribution": ("_contains",),
    "optuna.trial.FrozenTrial": ("_trial_id",),
    "optuna.samplers.TPESampler": ("_sample", "_constant_liar", "_gamma", "_rng.rng", "_n_ei_candidates",
                                   "_build_parzen_estimator", "_compare", "_compute_acquisition_func",
                                   "_get_params", "_group_decomposed_search_space"),
    # samplers.py: Optuna's group decomposition, fed each finished trial once (IncrementalGroupDecomposedSearchSpace).
    "optuna.search_space.group_decomposed": ("_GroupDecomposedSearchSpace", "_SearchSpaceGroup"),
    "optuna.search_space.group_decomposed._GroupDecomposedSearchSpace": ("_include_pruned", "_study_id",
                                                                         "_search_space"),
    # runs/journal.py: the journal file's records of one decision share one fsync (GroupCommitJournalBackend).
    "optuna.storages.journal.JournalFileBackend": ("_file_path", "_lock"),
    "optuna.storages.JournalStorage": ("_backend",),
    "optuna.storages.journal._file": ("get_lock_file",),
    "optuna.samplers._tpe.sampler": ("_split_trials", "default_gamma", "default_gamma_multiobjective"),
    # search.py: Tuner.restore takes no RunConfig, so a resume's callbacks and verbosity join the restored one;
    # the watchdog gets the (restored) search algorithm from the tuner's TuneConfig.
    "ray.tune.Tuner": ("_local_tuner.get_run_config", "_local_tuner._tune_config"),
    # cluster.py: keep loopback addresses as given, send the token to an explicit address, probe the GCS.
    "ray._private.ray_constants": ("ENABLE_RAY_CLUSTER",),
    "ray._private.services": ("canonicalize_bootstrap_address",),
    "ray._raylet": ("AuthenticationTokenLoader", "Config", "GcsClient"),
    # training/device.py: "auto" precision asks the CPU for native bf16 (looked up by name: a rename would
    # silently fall back to fp32, so this test says so instead).
    "torch.cpu": ("_is_avx512_bf16_supported", "_is_amx_tile_supported"),
}
#: Private keyword arguments of upstream functions, by the function. cluster.py: ``ray.init`` keeps the node
#: on the loopback address a test or a single machine gives.
PRIVATE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "ray.init": ("_node_ip_address",),
}


def specimens(storage: Path) -> dict[str, object]:
    """One live object of each owner in :data:`PRIVATE`: many of the attributes are set in ``__init__``;
    the Tuner's experiment goes under ``storage``."""
    from ray.tune.search import SearchGenerator
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)}, metric="loss", mode="min")
    study = optuna.create_study()
    trial = study.ask()
    journal = optuna.storages.journal.JournalFileBackend(str(storage / "journal.log"))
    return {
        "ray.tune.search.optuna.OptunaSearch": searcher,
        "ray.tune.search.SearchGenerator": SearchGenerator(searcher),
        "optuna.Study": study,
        "optuna.Trial": trial,
        "optuna.distributions.IntDistribution": optuna.distributions.IntDistribution(0, 1),
        "optuna.trial.FrozenTrial": study.trials[0],
        "optuna.samplers.TPESampler": optuna.samplers.TPESampler(multivariate=True, group=True),
        "optuna.search_space.group_decomposed": importlib.import_module("optuna.search_space.group_decomposed"),
        "optuna.search_space.group_decomposed._GroupDecomposedSearchSpace":
            importlib.import_module("optuna.search_space.group_decomposed")._GroupDecomposedSearchSpace(True),
        "optuna.storages.journal.JournalFileBackend": journal,
        "optuna.storages.JournalStorage": optuna.storages.JournalStorage(journal),
        "optuna.storages.journal._file": importlib.import_module("optuna.storages.journal._file"),
        "optuna.samplers._tpe.sampler": importlib.import_module("optuna.samplers._tpe.sampler"),
        **{name: importlib.import_module(name)
           for name in ("ray._private.ray_constants", "ray._private.services", "ray._raylet", "torch.cpu")},
        "ray.tune.Tuner": tune.Tuner(lambda config: None, run_config=tune.RunConfig(storage_path=str(storage))),
    }


def has_chain(thing: object, dotted: str) -> bool:
    for name in dotted.split("."):
        if not hasattr(thing, name):
            return False
        thing = getattr(thing, name)
    return True


def test_every_private_upstream_attribute_still_exists(tmp_path):
    objects = specimens(tmp_path)
    gone = [f"{owner}.{dotted}" for owner, names in PRIVATE.items() for dotted in names
            if not has_chain(objects[owner], dotted)]
    installed = f"ray {version('ray')}, optuna {version('optuna')}"
    assert not gone, (f"wrn-search relies on private attributes that {installed} no longer has: {', '.join(gone)}. "
                      "Install the versions pyproject.toml declares, or port the code that uses them.")


def test_every_private_keyword_still_exists():
    import inspect

    import ray

    functions = {"ray.init": ray.init}  # it takes them through **kwargs: read its source
    gone = [f"{owner}({name}=...)" for owner, names in PRIVATE_KEYWORDS.items() for name in names
            if f'"{name}"' not in inspect.getsource(functions[owner])]
    assert not gone, f"wrn-search passes private keywords that the installed Ray no longer takes: {', '.join(gone)}"


def test_the_installed_versions_are_the_declared_ones():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        if requirement.name in ("ray", "optuna", "torch"):
            assert requirement.specifier.contains(version(requirement.name)), (
                f"{requirement.name} {version(requirement.name)} is installed; wrn-search is tested with "
                f"{requirement}. Install that range, or test this version and widen it in pyproject.toml.")


def defined_names(tree: ast.Module) -> set[str]:
    """What a module defines: functions, classes, globals, class fields, and what an ``__init__`` sets."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, (ast.Module, ast.ClassDef)):
            for statement in node.body:
                targets = statement.targets if isinstance(statement, ast.Assign) else \
                    [statement.target] if isinstance(statement, ast.AnnAssign) else []
                names.update(target.id for target in targets if isinstance(target, ast.Name))
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            names.update(sub.attr for sub in ast.walk(node)
                         if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store))
    return names


GETTERS = ("getattr", "hasattr")


def looked_up(call: ast.Call, tree: ast.Module) -> list[str]:
    """The names a ``getattr`` call looks up: a string, or each string of the tuple a comprehension's
    variable runs over (``getattr(torch.cpu, name) for name in ("_is_...", ...)``)."""
    if len(call.args) < 2:
        return []
    name = call.args[1]
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return [name.value]
    if not isinstance(name, ast.Name):
        return []
    return [element.value for node in ast.walk(tree) if isinstance(node, ast.comprehension)
            and isinstance(node.target, ast.Name) and node.target.id == name.id and isinstance(node.iter, ast.Tuple)
            for element in node.iter.elts if isinstance(element, ast.Constant) and isinstance(element.value, str)]


def used_names(tree: ast.Module) -> dict[str, int]:
    """Attributes a module reads or sets, and the parts and names of its imports, with a line each."""
    used: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = node.module.split(".") + [alias.name for alias in node.names]
        elif isinstance(node, ast.keyword) and node.arg:
            names = [node.arg]  # ray.init(_node_ip_address=...)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in GETTERS:
            names = looked_up(node, tree)  # getattr(module, "_name")
        else:
            continue
        for name in names:
            used.setdefault(name, node.lineno)
    return used


def private_names_used() -> dict[str, str]:
    """Private names the sources use but do not define, each with one place it is used."""
    trees = {path: ast.parse(path.read_text(), str(path))
             for path in sorted(file for source in SOURCES for file in source.rglob("*.py"))}
    defined = set().union(*map(defined_names, trees.values()))
    return {name: f"{path.relative_to(ROOT)}:{line}" for path, tree in trees.items()
            for name, line in used_names(tree).items()
            if re.fullmatch(r"_[A-Za-z]\w*", name) and name not in defined}


def test_every_private_upstream_name_the_code_uses_is_listed():
    listed = {part for names in PRIVATE.values() for dotted in names for part in dotted.split(".")}
    listed |= {part for owner in PRIVATE for part in owner.split(".")}
    listed |= {name for names in PRIVATE_KEYWORDS.values() for name in names}
    unlisted = {name: where for name, where in private_names_used().items() if name not in listed}
    assert not unlisted, (f"the code uses private names that PRIVATE in {Path(__file__).name} does not list: "
                          + ", ".join(f"{name} ({where})" for name, where in sorted(unlisted.items())))
