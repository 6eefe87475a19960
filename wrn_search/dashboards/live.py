"""The live dashboard: a small stdlib HTTP server whose page re-fetches the run's views every few seconds.

It serves three fixed routes and nothing else (no file system paths, so no
traversal), reads the run on each refresh, and stops cleanly on Ctrl-C. The
same loop serves optuna-dashboard's WSGI app for ``--optuna``, read-only.

Requests are handled in threads, so a Ctrl-C always reaches the serving loop:
in a single-threaded server (optuna-dashboard's own ``run_server``) it can land
inside a request, where wsgiref logs it and keeps serving.

Neither server has authentication, so both answer only the host names they
were bound as: a DNS-rebinding page reaches 127.0.0.1 under its own name, which
the browser puts in the ``Host`` header. An IP address in ``Host`` always
passes, since a page can only send one by being served from that address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseServer, ThreadingMixIn
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from plotly.offline import get_plotlyjs

from wrn_search.errors import first_line
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import RunResults

from .page import page_html
from .views import build_views, views_json

#: Seconds a connection may stay silent (no request, or not reading the response) before it is dropped.
IDLE_TIMEOUT_S = 30.0

#: ``Host`` header: a bracketed IPv6 address or a name, then an optional port.
_HOST_HEADER = re.compile(r"(?:\[(?P<ipv6>[^\]]*)\]|(?P<name>[^:\[\]]*))(?::\d*)?")


def normal_host(name: str) -> str:
    """Host names compare without case, brackets or the root's trailing dot."""
    return name.strip("[]").rstrip(".").lower()


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    name = normal_host(host)
    return name == "localhost" or (is_ip_address(name) and ipaddress.ip_address(name).is_loopback)


def served_host_names(host: str, allow_hosts: Iterable[str] = ()) -> frozenset[str]:
    """The names a browser may send in ``Host`` to a server bound to ``host`` (IP addresses always pass).

    ``localhost`` and the bound name; beyond a loopback bind also this machine's host name and FQDN,
    the names others reach it by; ``allow_hosts`` adds more (a reverse proxy's, a tunnel's).
    """
    names = {"localhost", host, *allow_hosts}
    if not is_loopback(host):
        names |= {socket.gethostname(), socket.getfqdn()}
    return frozenset(filter(None, map(normal_host, names)))


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    """Whether a ``Host`` header names this server; a request without one is from no browser, so it passes."""
    if header is None:
        return True
    match = _HOST_HEADER.fullmatch(header.strip())
    if match is None:
        return False
    name = normal_host(match["ipv6"] if match["ipv6"] is not None else match["name"])
    return is_ip_address(name) or name in names


class GuardedServerMixin:
    """What both servers share: IPv6 literals (``::1``, ``::``) bind an IPv6 socket (the stdlib servers
    are IPv4-only), the host names answered, the idle timeout, and quiet hang-ups."""

    def __init__(self, server_address, *args, allow_hosts: Iterable[str] = (),
                 idle_timeout: float = IDLE_TIMEOUT_S, **kwargs):
        host, port = server_address[:2]
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.host_names = served_host_names(host, allow_hosts)
        self.idle_timeout = idle_timeout
        with listen_errors(host, port):
            super().__init__(server_address, *args, **kwargs)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up or stalls mid-response is routine, not a traceback on the terminal."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class GuardedHandlerMixin:
    """Request handling of both servers: refuses foreign ``Host`` names, drops silent clients."""

    server: GuardedServerMixin

    @property
    def timeout(self) -> float:
        """Applied to the socket by ``StreamRequestHandler``: a silent client would hold its thread forever."""
        return self.server.idle_timeout

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if len(self.headers.get_all("Host") or ()) > 1:  # RFC 9112 3.2: answer 400; which one a proxy used is unknown
            self.send_error(400, "More than one Host header")
            return False
        if host_allowed(self.headers.get("Host"), self.server.host_names):
            return True
        self.send_error(403, "Host not served",
                        "this dashboard answers only the host names it was started on (see --allow-host)")
        return False


def server_url(server: BaseServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class DashboardServer(GuardedServerMixin, ThreadingHTTPServer):
    """Serves one run directory; the page and plotly.js are built once, the views on every request."""

    daemon_threads = True

    def __init__(self, run_dir: str | Path, host: str = "127.0.0.1", port: int = 8050,
                 allow_hosts: Iterable[str] = (), idle_timeout: float = IDLE_TIMEOUT_S):
        self.run_dir = Path(run_dir).resolve()
        manifest = RunManifest.load(self.run_dir)  # a bad directory fails now, not on the first refresh
        self.routes = {
            "/": ("text/html; charset=utf-8", page_html(f"wrn-search: {manifest.name}").encode()),
            "/plotly.min.js": ("text/javascript; charset=utf-8", get_plotlyjs().encode()),
            "/api/views.json": ("application/json", None),
        }
        super().__init__((host, port), DashboardHandler, allow_hosts=allow_hosts, idle_timeout=idle_timeout)


class DashboardHandler(GuardedHandlerMixin, BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404, "no such page; the dashboard serves /, /plotly.min.js and /api/views.json")
            return
        content_type, body = route
        if body is None:
            try:
                body = views_json(build_views(RunResults.load(self.server.run_dir))).encode()  # fresh each poll
            except Exception as error:  # a run mid-write or a locked study: the page retries on its next refresh
                self.send_error(503, f"cannot read the run: {first_line(error)}")
                return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        """Quiet: the page polls every few seconds; errors are still logged."""


class ThreadingWSGIServer(GuardedServerMixin, ThreadingMixIn, WSGIServer):
    daemon_threads = True


class WSGIHandler(GuardedHandlerMixin, WSGIRequestHandler):
    """wsgiref's handler with the Host check and idle timeout (wsgiref itself takes hang-ups quietly)."""


#: A WSGI application (``wsgiref.types.WSGIApplication`` from Python 3.11 on).
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def read_only(app: WSGIApp) -> WSGIApp:
    """``app`` answering GET and HEAD only: optuna-dashboard's API also creates, renames and deletes
    studies and edits trials, for anyone who can reach the port. A request without ``Accept-Encoding``
    is answered as one that accepts no encoding."""
    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            # optuna-dashboard 0.21 reads Accept-Encoding for /static without a default: a 500 without it.
            environ.setdefault("HTTP_ACCEPT_ENCODING", "identity")
            return app(environ, start_response)
        body = b"read-only: wrn-search dashboard --optuna answers GET and HEAD only\n"
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8"),
                                                  ("Content-Length", str(len(body)))])
        return [body]

    return guarded


@contextmanager
def listen_errors(host: str, port: int):
    """A port in use or an unknown host is bad input (exit 2), not a traceback."""
    try:
        yield
    except OSError as error:
        raise ValueError(f"port: cannot listen on {host}:{port} ({error.strerror or error})") from None


def serve_until_interrupted(server: BaseServer, what: str) -> None:
    """Serve until Ctrl-C (KeyboardInterrupt), then release the port."""
    print(f"wrn-search dashboard: serving {what} at {server_url(server)} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8050, allow_hosts: Iterable[str] = ()) -> None:
    server = DashboardServer(run_dir, host, port, allow_hosts)
    serve_until_interrupted(server, str(server.run_dir))


def optuna_server(storage, host: str = "127.0.0.1", port: int = 8080, allow_hosts: Iterable[str] = (),
                  idle_timeout: float = IDLE_TIMEOUT_S) -> ThreadingWSGIServer:
    """optuna-dashboard (its documented ``wsgi`` app) on an Optuna storage, read-only."""
    import optuna_dashboard

    app = read_only(optuna_dashboard.wsgi(storage))
    server = ThreadingWSGIServer((host, port), WSGIHandler, allow_hosts=allow_hosts, idle_timeout=idle_timeout)
    server.set_app(app)
    return server


def serve_optuna(storage, host: str = "127.0.0.1", port: int = 8080, allow_hosts: Iterable[str] = ()) -> None:
    serve_until_interrupted(optuna_server(storage, host, port, allow_hosts), "optuna-dashboard (read-only)")
