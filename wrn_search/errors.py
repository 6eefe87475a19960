"""Exceptions that end a command with an exit code other than bad input's 2 (torch- and Ray-free)."""

from __future__ import annotations


class SearchStalled(RuntimeError):
    """A search sat with nothing running and nothing offered; the message says how to continue (exit 1)."""

    exit_code = 1
