"""Run every benchmark and print one line per figure (see each module for what it measures).

python bench/run_all.py                      # SQLite for sync; reports need PostgreSQL
BENCH_DATABASE_URL=postgresql://... python bench/run_all.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = ["bench_images.py", "bench_sync.py"]
    if (os.environ.get("BENCH_DATABASE_URL") or "").startswith("postgresql"):
        scripts.append("bench_reports.py")
    else:
        print("bench_reports.py skipped: it needs BENCH_DATABASE_URL=postgresql://...")
    failed = 0
    for script in scripts:
        print(f"== {script}", flush=True)
        failed |= subprocess.call([sys.executable, str(HERE / script)]) != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
