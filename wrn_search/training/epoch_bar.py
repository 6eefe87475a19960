"""The epoch bar of one training, on stderr: ``wrn-search train`` and ``wrn-search export --retrain``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

from wrn_search.records import Outcome


@contextmanager
def epoch_bar(name: str, epochs: int, done: int = 0) -> Iterator[Callable[[dict], None]]:
    """A bar from epoch ``done`` to ``epochs``; the function it yields takes an epoch's metrics
    (:meth:`wrn_search.training.engine.Trainer.fit`'s callback) and advances it when the epoch completed."""
    with tqdm(total=epochs, initial=done, desc=name, unit="epoch", file=sys.stderr) as bar:
        def advance(metrics: dict) -> None:
            if metrics["outcome"] != Outcome.COMPLETED:
                return
            shown = {"loss": f"{metrics['train_loss']:.3f}"}
            if metrics.get("val_error") is not None:  # retraining on train+val has no validation split
                shown["val_error"] = metrics["val_error"]
            bar.set_postfix(shown)
            bar.update()

        yield advance
