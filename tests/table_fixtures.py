"""The synthetic benchmark tables of ``benchmarks/synthetic_table.py``, for tests of the table and the simulator."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic_table import synthetic_rows, write_synthetic_table  # noqa: E402

__all__ = ["synthetic_rows", "write_synthetic_table"]
