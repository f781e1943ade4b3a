"""The README's first command on a stock machine: `scripts/setup.sh` under a clean environment
(`env -i`, only /usr/bin:/bin on PATH, so the system Python and no user Python), into a copy of
this checkout in a temporary folder, then the rest of that command as written.

Only this machine's pip configuration is passed in (PIP_CONFIG_FILE and the PIP_* variables), so
pip finds PyTorch's CPU wheel and the other packages where this machine keeps them instead of
downloading the multi-GB CUDA build: 39 s for set-up and the first command on a quiet machine
here (46 s for the test, with a second set-up that reuses the environment: 7 s).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bridge.midi import read_midi

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def first_command() -> str:
    block = re.search(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)[1]
    return block.splitlines()[0]


def copy_checkout(dest: Path) -> None:
    """The files a clone would have (tracked ones, and new ones git does not ignore), as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def pip_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    user_config = Path.home() / ".config" / "pip" / "pip.conf"
    if "PIP_CONFIG_FILE" not in env and user_config.is_file():
        env["PIP_CONFIG_FILE"] = str(user_config)
    return env


@pytest.mark.slow
@pytest.mark.skipif(not SYSTEM_PYTHON.is_file() or shutil.which("git") is None,
                    reason="needs the system Python (/usr/bin/python3) and git")
def test_the_first_command_works_with_only_the_system_python(tmp_path):
    checkout, home = tmp_path / "deep-musician", tmp_path / "home"
    home.mkdir()
    copy_checkout(checkout)
    command = first_command()
    assert command.startswith("bash scripts/setup.sh && ") and "deep-musician arrange" in command
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", "LANG=C.UTF-8",
           *(f"{k}={v}" for k, v in pip_environment().items())]
    start = time.monotonic()
    r = subprocess.run([*env, "bash", "-c", command], cwd=checkout, capture_output=True, text=True,
                       timeout=1500)
    took_s = time.monotonic() - start
    assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
    venv_python = checkout / ".venv" / "bin" / "python"
    version = subprocess.run([str(venv_python), "-c", "import sys; print(sys.base_prefix)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "/usr", f"the environment was made from {version}, not the system Python"
    assert "arranged 249 notes" in r.stdout, r.stdout
    assert read_midi(checkout / "arranged.mid").n_notes == 249
    assert (checkout / "arranged.png").stat().st_size > 10_000
    print(f"set-up and first command: {took_s:.0f} s")

    # a second run reuses the environment and installs nothing new: quick
    start = time.monotonic()
    r = subprocess.run([*env, "bash", "scripts/setup.sh"], cwd=checkout, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "making the virtual environment" not in r.stdout, r.stdout + r.stderr
    print(f"set-up again: {time.monotonic() - start:.0f} s")
