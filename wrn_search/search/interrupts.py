"""Ctrl-C and SIGTERM stop a search the same way: Tune stops, the results are written, and the
command says how to continue (exit status 128 + the signal: 130, or 143 for SIGTERM).

SIGTERM is what SLURM, Kubernetes and spot-instance preemption send. Left alone it would meet
Ray's handlers: ``ray.init`` installs a Python one that exits mid-work and the core worker a C++
one that aborts the driver with a stack dump. Tune's own SIGINT handler tells its caller nothing
(``fit`` returns as if done). So wrn-search handles both signals itself and hands the stop to
Tune's SIGUSR1 handler, which ends the run after a last experiment snapshot.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

#: The signals that stop a search.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Tune's switch for its own SIGINT handler (documented in Tune's environment variables).
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"
#: How often a stop that came before Tune listened looks again.
POLL_S = 0.1


class StopRequest(threading.Event):
    """Set once a stop signal came; ``signum`` says which (the exit status is 128 + it)."""

    def __init__(self) -> None:
        super().__init__()
        self.signum = signal.SIGINT
        #: SIGUSR1's handler before this search: a Tune run that ended earlier in the process may have left one.
        self.stale_handler = signal.getsignal(signal.SIGUSR1)

    def tune_listens(self) -> bool:
        handler = signal.getsignal(signal.SIGUSR1)
        return handler not in (signal.SIG_DFL, signal.SIG_IGN, None, self.stale_handler)

    def tell_tune(self) -> None:
        """Hand the stop to Tune once it listens: a signal in start-up (loading data, starting Ray) is kept."""
        while not self.tune_listens():
            time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGUSR1)


#: The request of the search this process runs (signal handlers are per process).
_request: StopRequest | None = None


@contextmanager
def interrupt_gracefully() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM stop the search through Tune, and are remembered in the request yielded.

    Entered again inside itself (after ``ray.init``, which installs its own SIGTERM handlers), it puts
    its handlers back and shares the request. A second signal raises ``KeyboardInterrupt`` at once.
    """
    global _request
    outer = _request
    request = outer or StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.is_set():
            raise KeyboardInterrupt
        request.signum = signum
        request.set()
        threading.Thread(target=request.tell_tune, name="wrn-search-stop", daemon=True).start()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    _request = request
    try:
        with environment(TUNE_SIGINT_ENV, "1"):  # Tune leaves SIGINT to us
            yield request
    finally:
        _request = outer
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


@contextmanager
def signals_held() -> Iterator[None]:
    """Stop signals wait for the block's end (``ray.init``: a ``KeyboardInterrupt`` or Ray's own SIGTERM
    handler mid-start leaves Ray half started); threads started in it never take them."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block, then what it was."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextmanager
def stoppable(session: AbstractContextManager) -> Iterator[None]:
    """Enter ``session`` (it starts or joins Ray) with stop signals held, then handle them as a search does:
    Ray's start installs its own SIGTERM handlers; a signal that came meanwhile stops the search once it runs."""
    with ExitStack() as stack:
        with signals_held():
            stack.enter_context(session)
            stack.enter_context(interrupt_gracefully())
        yield
