"""The live dashboard: fixed routes, fresh data on every refresh, Chromium renders it, Ctrl-C stops it cleanly.

Both it and optuna-dashboard answer only this machine's host names (DNS rebinding), drop silent
clients, take a client hanging up mid-response quietly, and optuna-dashboard is read-only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from browser import count_trace_points, render, requires_chromium
from run_fixtures import FakeTrial, add_trials, make_run

from wrn_search.cli import main
from wrn_search.dashboards.figures import PARETO_UID
from wrn_search.dashboards.live import DashboardServer, host_allowed, optuna_server, served_host_names, server_url
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.storage import open_run_storage


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "live-run", dataset="cifar100")


def serving(run_dir, host: str, **options):
    return started(DashboardServer(run_dir, host, 0, **options))


def started(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def stopped(server, thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def server(run_dir):
    server, thread = serving(run_dir, "127.0.0.1")
    yield server
    stopped(server, thread)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_serves_on_the_ipv6_loopback(run_dir):
    server, thread = serving(run_dir, "::1")
    try:
        assert server_url(server).startswith("http://[::1]:")
        assert get(server_url(server) + "api/views.json")[0] == 200
        assert ask(server, "GET", "/api/views.json", "[::1]")[0] == 200
    finally:
        stopped(server, thread)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_routes_are_fixed(server):
    status, page = get(server_url(server))
    assert status == 200 and b'src="plotly.min.js"' in page and b"api/views.json" in page
    assert get(server_url(server) + "plotly.min.js")[0] == 200
    for path in ("run.json", "study.db", "../run.json", "%2e%2e/run.json", "api/../run.json", "etc/passwd"):
        assert get(server_url(server) + path)[0] == 404, path
    request = urllib.request.Request(server_url(server), data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 501


def ask(server, method: str, path: str, host: str | None = None) -> tuple[int, bytes]:
    """One request to ``server`` (or its ``(host, port)``) with this ``Host`` header (``None``: its address)."""
    address = server if isinstance(server, tuple) else server.server_address[:2]
    connection = http.client.HTTPConnection(*address, timeout=30)
    try:
        connection.request(method, path, headers={} if host is None else {"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_only_this_machines_host_names_are_answered(server):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name, which the Host header carries."""
    port = server.server_address[1]
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1@evil.example", ""):
        status, body = ask(server, "GET", "/api/views.json", host)
        assert status == 403 and b"front_size" not in body, host
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LocalHost:{port}", "[::1]", f"[::1]:{port}",
                 "localhost:9000"):  # an SSH tunnel forwards another local port
        assert ask(server, "GET", "/api/views.json", host)[0] == 200, host


@pytest.mark.parametrize("bind, header, allowed", [
    ("127.0.0.1", "localhost:8050", True), ("127.0.0.1", "10.0.0.7:8050", True), ("127.0.0.1", "[fe80::1]", True),
    ("127.0.0.1", socket.gethostname(), socket.gethostname().lower() == "localhost"),
    ("0.0.0.0", f"{socket.gethostname()}:8050", True), ("0.0.0.0", "evil.example", False),
    ("gpu7.lab.example", "GPU7.lab.example.:8050", True), ("gpu7.lab.example", "gpu8.lab.example", False),
    ("::", "[2001:db8::1]:8050", True), ("::", "[::1", False), ("::", "localhost:http", False),
])
def test_host_names_of_a_bind(bind, header, allowed):
    assert host_allowed(header, served_host_names(bind)) is allowed
    assert host_allowed(None, served_host_names(bind))  # HTTP/1.0 without Host: no browser sends that


def test_allow_host_adds_a_name():
    assert not host_allowed("dash.lab.example", served_host_names("127.0.0.1"))
    assert host_allowed("dash.lab.example:443", served_host_names("127.0.0.1", ["Dash.Lab.Example"]))


def test_a_client_hanging_up_mid_response_is_no_traceback(run_dir, capsys):
    server, thread = serving(run_dir, "127.0.0.1")
    handled = threading.Event()
    serve_one = server.process_request_thread

    def tracked(*args):
        try:
            serve_one(*args)
        finally:
            handled.set()

    server.process_request_thread = tracked
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.sendall(b"GET /plotly.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(1) == b"H"  # the response has started: plotly.js is 4.8 MB
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        assert handled.wait(timeout=30)
    finally:
        stopped(server, thread)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


def test_a_silent_client_is_dropped_after_the_idle_timeout(run_dir):
    server, thread = serving(run_dir, "127.0.0.1", idle_timeout=0.5)
    try:
        with socket.create_connection(server.server_address[:2], timeout=20) as client:
            began = time.monotonic()
            assert client.recv(1024) == b""  # closed by the server, not by our own timeout
            assert time.monotonic() - began < 10
        assert get(server_url(server) + "api/views.json")[0] == 200  # the server serves on
    finally:
        stopped(server, thread)


@pytest.fixture
def optuna_dashboard(run_dir):
    storage = open_run_storage(run_dir, RunManifest.load(run_dir))
    server, thread = started(optuna_server(storage, "127.0.0.1", 0))
    yield server, storage
    stopped(server, thread)


def test_optuna_dashboard_is_read_only(optuna_dashboard):
    server, storage = optuna_dashboard
    study_id = storage.get_study_id_from_name("live-run-0000")
    for method, path in (("DELETE", f"/api/studies/{study_id}"), ("POST", "/api/studies"),
                         ("POST", f"/api/studies/{study_id}/rename"), ("PUT", f"/api/studies/{study_id}/note"),
                         ("POST", "/api/trials/1/user-attrs")):
        status, body = ask(server, method, path)
        assert status == 405 and b"read-only" in body, (method, path)
    assert [study.study_name for study in storage.get_all_studies()] == ["live-run-0000"]
    assert len(storage.get_all_trials(study_id)) == 8
    status, body = ask(server, "GET", f"/api/studies/{study_id}")
    assert status == 200 and b"WRN-16-2-B(3,3)" in body
    assert ask(server, "HEAD", "/api/studies")[0] == 200


def test_optuna_dashboard_answers_only_this_machines_names(optuna_dashboard):
    server, _ = optuna_dashboard
    assert ask(server, "GET", "/api/studies", "evil.example")[0] == 403
    assert ask(server, "GET", "/api/studies", "localhost")[0] == 200


def raw_request(server, lines: list[str]) -> bytes:
    """A request written byte by byte (http.client sends one Host header only), and the whole answer."""
    with socket.create_connection(server.server_address[:2], timeout=30) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_a_second_host_header_is_refused_by_both_servers(server, optuna_dashboard):
    """A good first Host header must not carry a foreign second one past the check."""
    for guarded, path in ((server, "/api/views.json"), (optuna_dashboard[0], "/api/studies")):
        answer = raw_request(guarded, [f"GET {path} HTTP/1.1", "Host: localhost", "Host: evil.example",
                                       "Connection: close"])
        assert answer.startswith(b"HTTP/1.0 400") and b"More than one Host header" in answer, answer[:200]


def test_optuna_dashboards_static_files_are_served_without_accept_encoding(optuna_dashboard):
    """optuna-dashboard answered 500, with a traceback in the terminal, to a /static request without it."""
    answer = raw_request(optuna_dashboard[0], ["GET /static/bundle.js HTTP/1.1", "Host: localhost",
                                                "Connection: close"])
    assert answer.startswith(b"HTTP/1.0 200") and b"Content-Encoding: gzip" not in answer, answer[:300]


def test_views_refresh_while_the_search_runs(server, run_dir):
    views = json.loads(get(server_url(server) + "api/views.json")[1])
    assert views["front_size"] == 3 and "8 trials" in views["summary"]
    add_trials(run_dir, (FakeTrial("WRN-13-1-B(1,3,1)", 0.01),))  # a new trial finishes
    views = json.loads(get(server_url(server) + "api/views.json")[1])
    assert "9 trials" in views["summary"] and views["front_size"] == 1


def test_bad_run_dir_and_busy_port(tmp_path, server, capsys):
    assert main(["dashboard", str(tmp_path)]) == 2
    assert "not a wrn-search run" in capsys.readouterr().err
    port = server.server_address[1]
    assert main(["dashboard", str(server.run_dir), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err


@requires_chromium
def test_chromium_renders_the_live_front(server, tmp_path):
    dom = render(server_url(server), tmp_path, "dashboard.png")
    status = re.search(r'<div id="status">([^<]*)', dom).group(1)
    assert status.startswith("updated "), status
    assert count_trace_points(dom, "pareto-params", PARETO_UID) == 3
    assert "Pareto set 3" in dom


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return line
        if process.poll() is not None:
            break
    raise AssertionError(f"no {text!r} from the dashboard")


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(url)[0] == 200:
                return
        except urllib.error.URLError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.parametrize("optuna", [False, True], ids=["wrn", "optuna-dashboard"])
def test_ctrl_c_exits_0_and_releases_the_port(run_dir, optuna):
    port = free_port()
    command = [sys.executable, "-m", "wrn_search", "dashboard", str(run_dir), "--port", str(port),
               "--allow-host", "dash.lab.example"]
    process = subprocess.Popen(command + (["--optuna"] if optuna else []), stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_line(process, f"127.0.0.1:{port}/")
        wait_until_up(f"http://127.0.0.1:{port}/")
        address = ("127.0.0.1", port)
        assert ask(address, "GET", "/", "dash.lab.example")[0] in (200, 302)  # optuna-dashboard redirects /
        assert ask(address, "GET", "/", "evil.example")[0] == 403
        if optuna:
            status, body = get(f"http://127.0.0.1:{port}/api/studies")
            assert status == 200 and b"live-run" in body
            assert ask(address, "DELETE", "/api/studies/1")[0] == 405
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with socket.socket() as probe:  # released: a new server (SO_REUSEADDR, as http.server sets) can listen on it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
