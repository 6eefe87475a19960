"""The live dashboard: a small stdlib HTTP server whose page re-fetches the run's views every few seconds.

It serves three fixed routes and nothing else (no file system paths, so no
traversal), reads the run on each refresh, and stops cleanly on Ctrl-C. The
same loop serves optuna-dashboard's WSGI app for ``--optuna``.

Requests are handled in threads, so a Ctrl-C always reaches the serving loop:
in a single-threaded server (optuna-dashboard's own ``run_server``) it can land
inside a request, where wsgiref logs it and keeps serving.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseServer, ThreadingMixIn
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIServer, make_server

from plotly.offline import get_plotlyjs

from wrn_search.rundir import RunManifest

from .page import page_html
from .views import build_views, views_json


class HostFamilyMixin:
    """Binds IPv6 literals (``::1``, ``::``) on an IPv6 socket; the stdlib servers are IPv4-only."""

    def __init__(self, server_address, *args, **kwargs):
        if ":" in server_address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(server_address, *args, **kwargs)


def server_url(server: BaseServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class DashboardServer(HostFamilyMixin, ThreadingHTTPServer):
    """Serves one run directory; the page and plotly.js are built once, the views on every request."""

    daemon_threads = True

    def __init__(self, run_dir: str | Path, host: str = "127.0.0.1", port: int = 8050):
        self.run_dir = Path(run_dir).resolve()
        manifest = RunManifest.load(self.run_dir)  # a bad directory fails now, not on the first refresh
        self.routes = {
            "/": ("text/html; charset=utf-8", page_html(f"wrn-search: {manifest.name}").encode()),
            "/plotly.min.js": ("text/javascript; charset=utf-8", get_plotlyjs().encode()),
            "/api/views.json": ("application/json", None),
        }
        with listen_errors(host, port):
            super().__init__((host, port), DashboardHandler)


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self.send_error(404, "no such page; the dashboard serves /, /plotly.min.js and /api/views.json")
            return
        content_type, body = route
        if body is None:
            try:
                body = views_json(build_views(self.server.run_dir)).encode()
            except Exception as error:  # a run mid-write or a locked study: the page retries on its next refresh
                self.send_error(503, f"cannot read the run: {str(error).splitlines()[0] if str(error) else error!r}")
                return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        """Quiet: the page polls every few seconds; errors are still logged."""


class ThreadingWSGIServer(HostFamilyMixin, ThreadingMixIn, WSGIServer):
    daemon_threads = True


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


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8050) -> None:
    server = DashboardServer(run_dir, host, port)
    serve_until_interrupted(server, str(server.run_dir))


def serve_optuna(storage, host: str = "127.0.0.1", port: int = 8080) -> None:
    """optuna-dashboard (its documented ``wsgi`` app) on an Optuna storage."""
    import optuna_dashboard

    with listen_errors(host, port):
        server = make_server(host, port, optuna_dashboard.wsgi(storage), server_class=ThreadingWSGIServer)
    serve_until_interrupted(server, "optuna-dashboard")
