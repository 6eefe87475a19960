"""Search orchestration: a search space in, a run directory with a study and results out.

``run_search`` validates everything before it writes anything, creates the run
directory, and hands Ray Tune a :class:`~wrn_search.search.searcher.StudySearcher`, a
scheduler and the function trainable; ``resume_search`` restores all three from
the run directory after a crash, a kill or a reboot. Both show one progress line
(:class:`~wrn_search.search.progress.ProgressLine`) instead of Ray's tables unless asked, and
end by writing ``results.csv`` and ``pareto.csv`` (the CLI adds ``report.html``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from ray import tune

from wrn_search.compat import alias_old_modules
from wrn_search.errors import RunDirUnwritable, SearchInterrupted, SearchStalled
from wrn_search.runs.checkpoints import trial_dirname
from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import (
    DEFAULT_STORAGE_PATH,
    SPACE_FILE,
    TRIAL_LOG,
    TUNE_DIR,
    RunManifest,
    init_run_dir,
    never_started,
    record_command,
    run_dir_for,
)
from wrn_search.runs.lock import run_dir_lock
from wrn_search.runs.logs import TRIAL_SCHEMA
from wrn_search.runs.results import ResultsHook, RunResults, write_results
from wrn_search.runs.storage import open_storage, open_study
from wrn_search.search.cluster import ray_session
from wrn_search.search.epoch_logger import EpochLogger
from wrn_search.search.failures import TrialFailures, unwritable_error
from wrn_search.search.interrupts import interrupt_gracefully, stoppable
from wrn_search.search.progress import ProgressLine, announce
from wrn_search.search.quiet import quiet_optuna, ray_quiet
from wrn_search.search.samplers import make_sampler
from wrn_search.search.schedulers import create_scheduler
from wrn_search.search.searcher import EXHAUSTED, StudySearcher, search_algorithm, study_searcher
from wrn_search.search.snapshot import has_snapshot
from wrn_search.search.trainable import build_trainable, load_space_dataset
from wrn_search.search.warmstart import WarmStart
from wrn_search.search.watchdog import SearchWatchdog
from wrn_search.spaces.space import SearchSpace, load_space

#: Retries of a crashed trial (from its last checkpoint) before the study is told FAIL.
MAX_FAILURES = 2


def build_tuner(space: SearchSpace, run_dir: Path, manifest: RunManifest, trainable) -> tune.Tuner:
    """A new Tune experiment for the run's study (a new run, or one killed before Tune wrote a snapshot).

    Its run config holds what a resume must restore with it (the epoch log); :func:`fit` adds each
    session's own callbacks and output.
    """
    searcher = StudySearcher(space, run_dir, manifest.study_name, manifest.storage, manifest.trial_budget)
    tune_storage, _, experiment = manifest.tune_path.rpartition("/")
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search_algorithm(searcher, space.search.max_concurrent),
            scheduler=create_scheduler(space, run_dir), num_samples=manifest.samples, reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=tune_storage,
            # Ray keeps every checkpoint folder; the trials delete old weights (wrn_search.runs.checkpoints).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=[EpochLogger(run_dir)],
        ),
    )


def session_callbacks(run_dir: Path, manifest: RunManifest, callbacks: Sequence[tune.Callback], progress: bool,
                      verbose: int) -> list[tune.Callback]:
    """The caller's callbacks, then the progress line (redrawn in place only on a terminal Ray does not print to)."""
    line = [ProgressLine(run_dir, manifest, in_place=sys.stderr.isatty() and not verbose)] if progress else []
    return [*callbacks, *line]


def fit(tuner: tune.Tuner, run_dir: Path, manifest: RunManifest, callbacks: Sequence[tune.Callback],
        verbose: int, progress: bool = True, on_results: ResultsHook | None = None) -> RunResults:
    """Run the experiment with this session's ``callbacks`` and Ray output, write the results (and hand them to
    ``on_results``) from one read of the run, and return that read; say so, and how to continue, if it did not end.
    A failed trial is one line (none without ``progress``) unless ``verbose``, or stops the search if the disk
    cannot be written (:class:`TrialFailures`)."""
    # Tuner.restore takes no RunConfig: this session's callbacks and verbosity join the restored one here.
    run_config = tuner._local_tuner.get_run_config()
    watchdog = SearchWatchdog(tuner._local_tuner._tune_config.search_alg)
    failures = TrialFailures(say=progress and not verbose, tracebacks=bool(verbose))
    run_config.callbacks = [*(run_config.callbacks or []), watchdog, failures, *callbacks]
    run_config.verbose = verbose
    ray_output = ray_quiet() if not verbose else nullcontext()
    with interrupt_gracefully() as interrupted, ray_output, failures.watching():
        try:
            tuner.fit()
        except Exception as error:
            cause = unwritable_error(error)
            if cause is None:
                raise
            raise RunDirUnwritable(f"run_dir: cannot write {cause.filename or run_dir} "
                                   f"({os.strerror(cause.errno)}); finished trials are kept: make room (or make it "
                                   f"writable) and continue with `wrn-search resume {run_dir}`") from None
    results = RunResults.load(run_dir)
    write_results(results)
    if on_results is not None:
        on_results(results)
    finished = len(results.trials) - results.unfinished
    if interrupted.is_set():
        raise SearchInterrupted(f"interrupted: {finished} of {manifest.samples} trials finished, "
                                f"{results.unfinished} unfinished; continue with: wrn-search resume {run_dir}",
                                interrupted.signum)
    if watchdog.stalled:
        raise SearchStalled(f"{watchdog.stalled}: {finished} of {manifest.samples} trials finished; "
                            f"continue with: wrn-search resume {run_dir}")
    searcher = study_searcher(watchdog.search_alg)
    if progress and searcher is not None and searcher.exhausted:
        print(f"wrn-search: {EXHAUSTED}", file=sys.stderr, flush=True)
    return results


def run_search(
    space: SearchSpace | str,
    name: str | None = None,
    storage_path: str = DEFAULT_STORAGE_PATH,
    address: str | None = None,
    study_storage: str | None = None,
    verbose: int = 0,
    progress: bool = True,
    callbacks: Sequence[tune.Callback] = (),
    argv: list[str] | None = None,
    warm_start: Sequence[str | Path] = (),
    on_results: ResultsHook | None = None,
) -> RunResults:
    """Run a search and return its results, read once at the end for the files and the caller.
    Bad input raises ``ValueError`` before anything is written.

    ``warm_start`` names earlier runs whose trials that fit the space enter the study as already
    evaluated, at no cost (:mod:`wrn_search.search.warmstart`).

    ``progress`` prints the run directory, the dashboard command and one progress line on stderr;
    ``verbose`` is Ray Tune's own output (``RunConfig.verbose``: 0 none, 1 its status and per-trial
    tables, 2 every result); ``callbacks`` are more Ray Tune callbacks (W&B, MLflow, your own), run on
    this process. The run directory gets ``results.csv`` and ``pareto.csv``; ``on_results`` is called with the
    results once they are written, also when the search was interrupted (``wrn-search run`` writes
    ``report.html`` there).
    """
    if isinstance(space, str):
        space = load_space(space)
    name = name or f"{Path(str(space.source)).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name: {name!r} is not a valid run name (no '/', not starting with '.')")
    run_dir, tune_storage = run_dir_for(name, storage_path)
    if run_dir.exists() and not never_started(run_dir):
        raise FileExistsError(f"run directory {run_dir} exists; continue it with `wrn-search resume {run_dir}`")
    warm = WarmStart.plan(space, warm_start, run_dir) if warm_start else None
    with quiet_optuna():
        make_sampler(space)  # fails now, not in Ray, if the sampler cannot be built
        if study_storage is not None:
            open_storage(study_storage)
        dataset = load_space_dataset(space)
        with stoppable(ray_session(address)):
            tune_path = f"{tune_storage}/{TUNE_DIR}"
            trainable = build_trainable(space, dataset, tune_path)
            run_dir.mkdir(parents=True, exist_ok=True)
            with run_dir_lock(run_dir, "wrn-search run"):
                try:
                    manifest = init_run_dir(space, run_dir, name, tune_path, study_storage, argv)
                    if warm is not None:  # before the searcher's first ask; the rungs go to scheduler.jsonl
                        warm.apply(warm.study(manifest), create_scheduler(space, run_dir))
                    tuner = build_tuner(space, run_dir, manifest, trainable)
                except BaseException:
                    shutil.rmtree(run_dir, ignore_errors=True)  # a run that never started leaves nothing behind
                    raise
                if progress:
                    announce(f"run directory {run_dir}", run_dir)
                    if warm is not None:
                        warm.say()
                return fit(tuner, run_dir, manifest,
                           session_callbacks(run_dir, manifest, callbacks, progress, verbose), verbose, progress,
                           on_results)


def logged_trials(run_dir: Path) -> set[int]:
    """Numbers of the trials the run's ``trials.jsonl`` says were told to the study."""
    return {record["number"] for record in read_jsonl(run_dir / TRIAL_LOG, TRIAL_SCHEMA)}


def set_budgets(space: SearchSpace, manifest: RunManifest, run_dir: Path, samples: int | None,
                epoch_budget: int | None) -> None:
    """Put the budgets ``resume`` was given on ``manifest`` (saved once the run is held), validated as the space's
    own fields on top of those an earlier resume set; fewer samples than the trials the run finished are refused."""
    raised = {key: value for key, value in (("samples", samples), ("epoch_budget", epoch_budget)) if value is not None}
    if not raised:
        return
    budget = space.with_overrides(**{"samples": manifest.samples, "epoch_budget": manifest.epoch_budget,
                                     **raised}).trial_budget()
    finished = len(logged_trials(run_dir))
    if samples is not None and budget.samples < finished:
        raise ValueError(f"samples: {budget.samples} is below the {finished} trials this run has finished; "
                         f"give at least {finished}")
    manifest.samples, manifest.epoch_budget = budget.samples, budget.epoch_budget


def check_study_holds_logged_trials(run_dir: Path, manifest: RunManifest) -> None:
    """Refuse a study that lost trials its run's log recorded (emptied, recreated, an old backup): resuming
    would start a new study over this run's logs and mix two runs in one directory."""
    logged = logged_trials(run_dir)
    if not logged:
        return
    try:
        held = {trial.number for trial in open_study(run_dir, manifest).get_trials(deepcopy=False)}
    except ValueError:
        held = set()
    if not logged <= held:
        raise ValueError(f"run_dir: the study ({manifest.storage}) lacks {len(logged - held)} of the "
                         f"{len(logged)} trials trials.jsonl recorded; resuming would mix a new study with this "
                         "run's logs: restore the study, or start a new run")


def resume_search(run_dir: str | Path, samples: int | None = None, address: str | None = None,
                  argv: list[str] | None = None, epoch_budget: int | None = None, verbose: int = 0,
                  progress: bool = True, callbacks: Sequence[tune.Callback] = (),
                  on_results: ResultsHook | None = None) -> RunResults:
    """Continue a run: finished trials stay, unfinished ones resume from their newest checkpoint; return its results.

    ``samples`` and ``epoch_budget`` replace the run's budgets (the searcher re-reads them from run.json).
    A run killed before Tune wrote its first snapshot starts its experiment now. ``verbose``,
    ``progress``, ``callbacks`` and ``on_results`` are :func:`run_search`'s, for this session.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    manifest = RunManifest.load(run_dir)
    if manifest.table is not None:
        raise ValueError(f"run_dir: {run_dir} is a simulated run (table {manifest.table}); nothing to resume: "
                         "simulate again")
    space = load_space(str(run_dir / SPACE_FILE))
    set_budgets(space, manifest, run_dir, samples, epoch_budget)  # refused before the lock: nothing written
    with run_dir_lock(run_dir, "wrn-search resume"), quiet_optuna():
        open_storage(manifest.storage)
        check_study_holds_logged_trials(run_dir, manifest)
        dataset = load_space_dataset(space)
        with stoppable(ray_session(address)):
            manifest.save(run_dir)
            record_command(run_dir, argv)
            trainable = build_trainable(space, dataset, manifest.tune_path)
            if has_snapshot(manifest.tune_path):
                headline = f"resuming {run_dir}"
                alias_old_modules()  # a snapshot of a run made before the layout by layer names old modules
                tuner = tune.Tuner.restore(manifest.tune_path, trainable, resume_unfinished=True,
                                           resume_errored=True)
            else:
                headline = f"starting {run_dir} (Ray's experiment snapshot is missing or torn)"
                tuner = build_tuner(space, run_dir, manifest, trainable)
            if progress:
                announce(headline, run_dir)
            return fit(tuner, run_dir, manifest, session_callbacks(run_dir, manifest, callbacks, progress, verbose),
                       verbose, progress, on_results)
