"""Joining a Ray cluster or starting a local Ray: the one place wrn-search calls ``ray.init``.

Ray 2.60 gets three things wrong for a user who types ``--address`` (docs/cluster.md has the details):

- It sends this machine's auth token to a cluster it finds itself (``auto``) but not to an
  address it is given, so a token-protected head answers "Unauthenticated" while ``ray.init``
  retries for 20-25 s. Here a token on this machine is sent to any cluster it joins.
- It rewrites a loopback address (127.0.0.1, localhost, ::1) to the machine's network address,
  where a head bound to loopback does not listen. Here an address is dialled as given.
- A local Ray binds its ports on every interface. Here it binds to 127.0.0.1 only: a laptop
  running a search opens no port to its network; joining other machines takes ``--address``.

A cluster that cannot be joined is one line naming ``address:``: nothing listening, a missing or
wrong token, a version mismatch, each found in under a second instead of Ray's retries.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import ray
import ray._private.ray_constants as ray_constants
from ray._private.services import canonicalize_bootstrap_address
from ray._raylet import AuthenticationTokenLoader, Config, GcsClient
from ray.exceptions import AuthenticationError, RpcError

from wrn_search.errors import BadInput, ClusterUnreachable

LOOPBACK = "127.0.0.1"
#: Ray's switch for token authentication (``token`` or ``disabled``), read from the environment only.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: Where Ray looks for the token, in its order.
TOKEN_SOURCES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
RAY_INIT_OPTIONS = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
#: How long Tune waits for a trial's thread to end before reusing its actor for the next trial (read by
#: the trial processes). Tune's default, 2 s, runs out on a busy node, and Tune then loses the new trial
#: (wrn_search.search.watchdog); a value set in the driver's environment is passed on instead.
REUSE_TIMEOUT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"
REUSE_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 5.0


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join ``address`` or start a local Ray for the block; stop only what this call started."""
    if ray.is_initialized():
        if address:
            raise BadInput(f"address: this process is already connected to Ray; call ray.shutdown() "
                           f"before joining {address!r}")
        yield
        return
    if address:
        join(address)
    else:
        start_local()
    try:
        yield
    finally:
        ray.shutdown()


def start_local() -> None:
    """A Ray of this machine alone, listening on 127.0.0.1 only."""
    with loopback_kept():
        ray.init(address="local", _node_ip_address=LOOPBACK, runtime_env=trial_environment(), **RAY_INIT_OPTIONS)


def trial_environment() -> dict:
    """The runtime environment of this job's trial processes, on every node: the actor reuse timeout."""
    return {"env_vars": {REUSE_TIMEOUT_ENV: os.environ.get(REUSE_TIMEOUT_ENV, str(REUSE_TIMEOUT_S))}}


def join(address: str) -> None:
    """Connect to the cluster at ``address`` ('auto' or host:port), or fail in one line saying why."""
    if address.startswith("ray://"):
        raise BadInput("address: Ray Client (ray://) is not supported: Tune would run the search on the head "
                       "node, away from this run directory; run wrn-search on a cluster node with --address "
                       "HEAD_IP:6379")
    with loopback_kept():
        gcs_address = resolve(address)
        where = gcs_address if gcs_address == address else f"{gcs_address} ({address!r})"
        check_listening(gcs_address, where)
        send_token_if_any()
        check_token(gcs_address, where)
        try:
            ray.init(address=gcs_address, runtime_env=trial_environment(), **RAY_INIT_OPTIONS)
        except (ConnectionError, RuntimeError, ValueError) as error:
            ray.shutdown()
            hint = "; install the same Ray and Python on every node" if "Version mismatch" in str(error) else ""
            raise ClusterUnreachable(f"address: cannot join the Ray cluster at {where} "
                                     f"({one_line(error)}){hint}") from None


@contextmanager
def loopback_kept() -> Iterator[None]:
    """Stop Ray from replacing 127.0.0.1 with the network address while it starts or joins.

    Ray's ``resolve_ip_for_localhost`` rewrites every loopback host it is given, a ``ray.init``
    address and ``_node_ip_address`` alike, unless ``ENABLE_RAY_CLUSTER`` is off (its switch for
    single-machine platforms, read once from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at import).
    Once connected, Ray asks the connected node for its address instead.
    """
    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def resolve(address: str) -> str:
    """host:port of the cluster's GCS; 'auto' is the cluster ``ray start`` last started on this machine."""
    try:
        gcs_address = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        raise ClusterUnreachable(f"address: no Ray cluster found for {address!r} ({one_line(error)}); "
                                 "give HEAD_IP:6379 or start one with `ray start --head`") from None
    if not gcs_address.rpartition(":")[2].isdigit():
        raise BadInput(f"address: expected 'auto' or HOST:PORT (the port of `ray start --head --port`), "
                       f"got {address!r}")
    return gcs_address


def check_listening(gcs_address: str, where: str) -> None:
    """Fail at once on a port nobody listens on (Ray itself retries for half a minute)."""
    host, _, port = gcs_address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise ClusterUnreachable(f"address: nothing listens at {where} ({reason}); start the head with "
                                 "`ray start --head --port=6379` or leave out --address") from None


def send_token_if_any() -> None:
    """Send this machine's token, as Ray does for 'auto' only; an explicit RAY_AUTH_MODE is kept."""
    mode = os.environ.get(AUTH_MODE_ENV)
    has_token = AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)
    if mode == "token" and not has_token:  # Ray's GCS client would abort this process
        raise BadInput(f"address: {AUTH_MODE_ENV}=token, but this machine has no auth token ({TOKEN_SOURCES}): "
                       "copy the head node's ~/.ray/auth_token to this machine")
    if mode is None and has_token:
        os.environ[AUTH_MODE_ENV] = "token"  # child processes see it too
        Config.initialize("")  # Ray's C++ side reads the mode once; this rereads it


def check_token(gcs_address: str, where: str) -> None:
    """Ask the GCS for its cluster id: a token it refuses fails here at once, not after 20-25 s of retries."""
    try:
        with native_stderr_silenced():  # Ray's C++ client logs each refusal before raising
            GcsClient(address=gcs_address)
    except AuthenticationError:
        mode = os.environ.get(AUTH_MODE_ENV)
        if mode == "token":
            problem = (f"refuses this machine's auth token ({TOKEN_SOURCES}): copy the head node's "
                       "~/.ray/auth_token to this machine")
        elif mode:
            problem = f"asks for an auth token, and {AUTH_MODE_ENV}={mode} sends none: set {AUTH_MODE_ENV}=token"
        else:
            problem = (f"asks for an auth token, and this machine has none ({TOKEN_SOURCES}): copy the head "
                       "node's ~/.ray/auth_token to this machine")
        raise ClusterUnreachable(f"address: the Ray cluster at {where} {problem}") from None
    except RpcError as error:
        raise ClusterUnreachable(f"address: {where} answers but not as a Ray head ({one_line(error)}); "
                                 "give the port of "
                                 "`ray start --head --port`") from None


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block: native code logs there, past ``sys.stderr``."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
