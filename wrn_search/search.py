"""Search orchestration: a search space in, a run directory with a study and results out.

``run_search`` validates everything before it writes anything, creates the run
directory, and hands Ray Tune a :class:`~wrn_search.searcher.StudySearcher`, a
scheduler and the function trainable; ``resume_search`` restores all three from
the run directory after a crash, a kill or a reboot. Both show one progress line
(:class:`~wrn_search.progress.ProgressLine`) instead of Ray's tables unless asked, and
end by writing ``results.csv``, ``pareto.csv`` and ``report.html``.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import optuna
from ray import tune
from ray.tune.schedulers import HyperBandScheduler, MedianStoppingRule, TrialScheduler

from .checkpoints import TrialCheckpoints, trial_dirname
from .cluster import ray_session
from .dashboards.report import REPORT_FILE, write_report
from .data import Dataset
from .interrupts import environment, interrupt_gracefully, stoppable
from .errors import SearchStalled
from .failures import RAY_UNHANDLED_ERRORS_ENV, TrialFailures, unwritable_error
from .lock import LOCK_FILE, run_dir_lock
from .rundir import (COMMAND_FILE, EPOCH_LOG, SCHEDULER_LOG, SPACE_FILE, STUDY_JOURNAL, TRIAL_LOG, TRIAL_SCHEMA,
                     TUNE_DIR, RunManifest, EpochLog, epoch_record, open_storage, read_jsonl)
from .resources import trial_resources
from .results import RunResults, open_study, write_results
from .schedulers import SuccessiveHalving
from .recipe import START_EPOCH
from .samplers import make_sampler
from .searcher import EXHAUSTED, StudySearcher, search_algorithm, study_searcher
from .snapshot import has_snapshot
from .space import SearchSpace, load_space
from .trainable import train_trial
from .progress import ProgressLine, announce
from .watchdog import SearchWatchdog
from .warmstart import WarmStart

DEFAULT_STORAGE_PATH = "wrn-runs"
#: Retries of a crashed trial (from its last checkpoint) before the study is told FAIL.
MAX_FAILURES = 2
#: Tune's switch between its output engines (``RunConfig.verbose``'s docs). The new one prints a box naming
#: internal classes and a TensorBoard hint with a temporary path even at verbose 0; the old one is silent then.
TUNE_NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"


class EpochLogger(tune.Callback):
    """Appends every trained epoch to ``epochs.jsonl`` once, on the driver, fsynced: the durable curves.

    Saved with the experiment and restored by ``resume``: each session reads the log again
    (:class:`~wrn_search.rundir.EpochLog`), so an epoch reported again after a kill is not logged twice,
    and an epoch whose line a kill lost is taken from the trial's checkpoint, which keeps every epoch's metrics.
    """

    def __init__(self, run_dir: str | Path):
        self.path = str(Path(run_dir) / EPOCH_LOG)
        self._log: EpochLog | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path}  # what was logged is read from the log, not from the snapshot

    def __setstate__(self, state: dict) -> None:
        self.__init__(Path(state["path"]).parent)

    def setup(self, **info) -> None:
        self._log = EpochLog(self.path)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._log is None:
            self.setup()
        resources = trial.placement_group_factory.required_resources
        record = epoch_record(trial.trial_id, trial.config, result, resources, time.time())
        lost = self._log.missing(record, int(trial.config.get(START_EPOCH, 0)))
        if lost and record["number"] is not None:
            trained = {metrics.get("epoch"): metrics for metrics in self._checkpoints(record["number"]).history()}
            for epoch in lost:
                if epoch in trained:
                    self._log.append(epoch_record(trial.trial_id, trial.config, trained[epoch], resources, time.time()))
        self._log.append(record)

    def _checkpoints(self, number: int) -> TrialCheckpoints:
        return TrialCheckpoints(RunManifest.load(Path(self.path).parent).tune_path, number)


def make_scheduler(space: SearchSpace, run_dir: Path | None) -> TrialScheduler | None:
    """The space's early stopping; asha and moasha save their rungs in ``run_dir`` (None: kept in memory)."""
    search = space.search
    epochs = space.training.epochs
    name = search.scheduler
    if name in ("moasha", "asha"):
        objectives = list(search.objectives) if name == "moasha" else ["val_error"]
        grace = min(search.grace_period, epochs)
        return SuccessiveHalving(objectives, epochs, grace, search.reduction_factor,
                                 run_dir / SCHEDULER_LOG if run_dir else None)
    if name == "hyperband":
        return HyperBandScheduler(time_attr="epoch", metric="val_error", mode="min", max_t=epochs,
                                  reduction_factor=search.reduction_factor)
    if name == "median":
        return MedianStoppingRule(time_attr="epoch", metric="val_error", mode="min",
                                  grace_period=search.grace_period)
    return None


def build_trainable(space: SearchSpace, dataset: Dataset, experiment_path: str | None = None):
    """The trainable with the dataset in Ray's object store; ``experiment_path`` lets trials find their checkpoints."""
    trainable = tune.with_parameters(train_trial, dataset=dataset, training=space.training,
                                     experiment_path=experiment_path)
    return tune.with_resources(trainable, trial_resources(space, dataset))


def load_space_dataset(space: SearchSpace) -> Dataset:
    """The space's dataset, split with the search's seed (SVHN's extra split included when asked)."""
    return space.dataset.load(space.search.seed)


def run_dir_for(name: str, storage_path: str) -> tuple[Path, str]:
    """The local run directory and Ray's storage location (a URI such as s3://bucket/runs works too)."""
    if "://" in storage_path:
        return Path(DEFAULT_STORAGE_PATH).resolve() / name, f"{storage_path.rstrip('/')}/{name}"
    run_dir = Path(storage_path).expanduser().resolve() / name
    return run_dir, str(run_dir)


def record_command(run_dir: Path, argv: list[str] | None) -> None:
    line = shlex.join(argv if argv is not None else ["wrn-search", *sys.argv[1:]])
    with open(run_dir / COMMAND_FILE, "a") as file:
        file.write(line + "\n")


def init_run_dir(space: SearchSpace, run_dir: Path, name: str, tune_path: str | None, study_storage: str | None,
                 argv: list[str] | None, table: str | None = None) -> RunManifest:
    """Write a new run directory's space, manifest and command; ``table`` names a simulated run's table."""
    budget = space.trial_budget()
    manifest = RunManifest(
        name=name, study_name=f"{name}-{uuid.uuid4().hex[:8]}",
        storage=study_storage or str(run_dir / STUDY_JOURNAL),
        objectives=list(space.search.objectives), directions=["minimize"] * len(space.search.objectives),
        tune_path=tune_path, dataset=space.dataset.name, epochs=space.training.epochs,
        samples=budget.samples, epoch_budget=budget.epoch_budget, table=table,
    )
    space.to_yaml(run_dir / SPACE_FILE)
    manifest.save(run_dir)
    record_command(run_dir, argv)
    return manifest


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
            scheduler=make_scheduler(space, run_dir), num_samples=manifest.samples, reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=tune_storage,
            # Ray keeps every checkpoint folder; the trials delete old weights (wrn_search.checkpoints).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=[EpochLogger(run_dir)],
        ),
    )


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended the search; the message says what finished and how to continue
    (exit 128 + ``signum``: 130 or 143)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


class RunDirUnwritable(OSError):
    """The run directory or Tune's storage could not be written (disk full, read-only)."""


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


def session_callbacks(run_dir: Path, manifest: RunManifest, callbacks: Sequence[tune.Callback], progress: bool,
                      verbose: int) -> list[tune.Callback]:
    """The caller's callbacks, then the progress line (redrawn in place only on a terminal Ray does not print to)."""
    line = [ProgressLine(run_dir, manifest, in_place=sys.stderr.isatty() and not verbose)] if progress else []
    return [*callbacks, *line]


#: Tune's logger of experiment snapshots: a snapshot that fails while a stop signal ends the search is logged
#: with a traceback, and ``resume`` copes with a missing or torn snapshot (wrn_search.snapshot).
SNAPSHOT_LOGGER = "ray.tune.execution.experiment_state"


@contextmanager
def ray_quiet() -> Iterator[None]:
    """Without ``--verbose``: no start-up box, no "Unhandled error" tracebacks of trials whose failure is told in
    one line already (wrn_search.failures), no traceback of a snapshot a stop interrupted."""
    snapshots = logging.getLogger(SNAPSHOT_LOGGER)
    level = snapshots.level
    snapshots.setLevel(logging.CRITICAL)
    try:
        with environment(TUNE_NEW_OUTPUT_ENV, "0"), environment(RAY_UNHANDLED_ERRORS_ENV, "1"):
            yield
    finally:
        snapshots.setLevel(level)


def fit(tuner: tune.Tuner, run_dir: Path, manifest: RunManifest, callbacks: Sequence[tune.Callback],
        verbose: int, progress: bool = True) -> RunResults:
    """Run the experiment with this session's ``callbacks`` and Ray output, write the results and the report
    from one read of the run, and return that read; say so, and how to continue, if it did not end.
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
    write_report(results, run_dir / REPORT_FILE)
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


def never_started(run_dir: Path) -> bool:
    """A directory a killed ``run`` left before it wrote ``run.json``: nothing in it but what comes first."""
    return set(os.listdir(run_dir)) <= {SPACE_FILE, LOCK_FILE}


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
) -> RunResults:
    """Run a search and return its results, read once at the end for the files and the caller.
    Bad input raises ``ValueError`` before anything is written.

    ``warm_start`` names earlier runs whose trials that fit the space enter the study as already
    evaluated, at no cost (:mod:`wrn_search.warmstart`).

    ``progress`` prints the run directory, the dashboard command and one progress line on stderr;
    ``verbose`` is Ray Tune's own output (``RunConfig.verbose``: 0 none, 1 its status and per-trial
    tables, 2 every result); ``callbacks`` are more Ray Tune callbacks (W&B, MLflow, your own), run on
    this process. The run directory gets ``results.csv``, ``pareto.csv`` and ``report.html``.
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
                        warm.apply(warm.study(manifest), make_scheduler(space, run_dir))
                    tuner = build_tuner(space, run_dir, manifest, trainable)
                except BaseException:
                    shutil.rmtree(run_dir, ignore_errors=True)  # a run that never started leaves nothing behind
                    raise
                if progress:
                    announce(f"run directory {run_dir}", run_dir)
                    if warm is not None:
                        warm.say()
                return fit(tuner, run_dir, manifest,
                           session_callbacks(run_dir, manifest, callbacks, progress, verbose), verbose, progress)


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
                  progress: bool = True, callbacks: Sequence[tune.Callback] = ()) -> RunResults:
    """Continue a run: finished trials stay, unfinished ones resume from their newest checkpoint; return its results.

    ``samples`` and ``epoch_budget`` replace the run's budgets (the searcher re-reads them from run.json).
    A run killed before Tune wrote its first snapshot starts its experiment now. ``verbose``,
    ``progress`` and ``callbacks`` are :func:`run_search`'s, for this session.
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
                tuner = tune.Tuner.restore(manifest.tune_path, trainable, resume_unfinished=True,
                                           resume_errored=True)
            else:
                headline = f"starting {run_dir} (Ray's experiment snapshot is missing or torn)"
                tuner = build_tuner(space, run_dir, manifest, trainable)
            if progress:
                announce(headline, run_dir)
            return fit(tuner, run_dir, manifest, session_callbacks(run_dir, manifest, callbacks, progress, verbose),
                       verbose, progress)
