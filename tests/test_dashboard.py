"""The live dashboard: fixed routes, fresh data on every refresh, Chromium renders it, Ctrl-C stops it cleanly."""

from __future__ import annotations

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
from wrn_search.dashboards.live import DashboardServer, server_url


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "live-run", dataset="cifar100")


def serving(run_dir, host: str):
    server = DashboardServer(run_dir, host, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def server(run_dir):
    server, thread = serving(run_dir, "127.0.0.1")
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


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
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
    command = [sys.executable, "-m", "wrn_search", "dashboard", str(run_dir), "--port", str(port)]
    process = subprocess.Popen(command + (["--optuna"] if optuna else []), stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_line(process, f"127.0.0.1:{port}/")
        wait_until_up(f"http://127.0.0.1:{port}/")
        if optuna:
            status, body = get(f"http://127.0.0.1:{port}/api/studies")
            assert status == 200 and b"live-run" in body
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
