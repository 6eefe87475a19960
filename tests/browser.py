"""Headless Chromium for the report and dashboard tests: render a page, read its DOM, take a screenshot.

Uses Debian's ``chromium`` (``apt-get install -y chromium``); tests skip with that
reason when it is absent. Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Virtual milliseconds the page may run (plotly renders, the live page fetches) before the DOM is read.
BUDGET_MS = 8000

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: apt-get update && apt-get install -y chromium")


def render(url: str, tmp_path: Path, screenshot_name: str) -> str:
    """The DOM after the page has rendered (fresh profile); also saves a screenshot as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--virtual-time-budget={BUDGET_MS}",
         "--window-size=1280,2700", f"--screenshot={ARTIFACTS / screenshot_name}", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, check=True)
    return result.stdout


class _PointCounter(HTMLParser):
    """Counts ``path.point`` inside ``g.trace<uid>`` inside the element with id ``container``."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, container: str, trace_class: str):
        super().__init__()
        self.container, self.trace_class = container, trace_class
        self.stack = [(False, False)]
        self.count = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        in_container = self.stack[-1][0] or attributes.get("id") == self.container
        in_trace = self.stack[-1][1] or (in_container and self.trace_class in classes)
        if tag == "path" and in_trace and "point" in classes:
            self.count += 1
        if tag not in self.VOID:
            self.stack.append((in_container, in_trace))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag not in self.VOID and len(self.stack) > 1:
            self.stack.pop()


def count_trace_points(dom: str, figure_id: str, uid: str) -> int:
    """Markers plotly drew for the scatter trace ``uid`` in the figure div ``figure_id``."""
    counter = _PointCounter(figure_id, f"trace{uid}")
    counter.feed(dom)
    return counter.count
