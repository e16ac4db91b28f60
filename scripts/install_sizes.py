"""Measures what installing gpt-keras puts on disk: the core, then the core plus each extra.

Each figure is the size of `site-packages` in a fresh virtual environment (pip's cache may serve the
downloads), built in a temporary folder that is deleted afterwards. Prints the size column of docs/install.md's table.
Takes many minutes: TensorFlow alone unpacks to about 2 GB. Needs Python 3.11+ (tomllib).

Usage:
    python scripts/install_sizes.py               # the core and every extra of pyproject.toml
    python scripts/install_sizes.py gpt2 lab      # the core and these extras
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def site_packages(venv: Path) -> Path:
    (site,) = list(venv.glob("lib/python*/site-packages")) or list(venv.glob("Lib/site-packages"))
    return site


def megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink()) / 1e6


def make_venv(venv: Path, requirement: str) -> None:
    # Without PYTHONPATH: pip would take a checkout's gpt_keras.egg-info on it for an installed gpt-keras.
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=environment)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", requirement], check=True, env=environment,
                   cwd=venv.parent)


def main(extras: list[str]) -> int:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    unknown = sorted(set(extras) - set(declared))
    if unknown:
        print(f"unknown extra(s): {', '.join(unknown)}; pyproject.toml has {', '.join(declared)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpt-keras-sizes-") as folder:
        core = Path(folder) / "core"
        make_venv(core, str(REPO))
        core_mb = megabytes(site_packages(core))
        print(f"| core | {core_mb:,.0f} MB |", flush=True)
        for extra in extras or list(declared):
            venv = Path(folder) / extra
            make_venv(venv, f"{REPO}[{extra}]")
            print(f"| [{extra}] | +{megabytes(site_packages(venv)) - core_mb:,.0f} MB |", flush=True)
            shutil.rmtree(venv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
