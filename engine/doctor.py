"""``deep-musician doctor``: what is installed, what is missing, and the command that fixes it."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

SETUP = "bash scripts/setup.sh"


def _module(name: str) -> tuple[bool, str]:
    try:
        mod = importlib.import_module(name)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, getattr(mod, "__version__", "installed")


def run_checks(model_dirs: list[str] | None = None) -> int:
    """Print one line per check; return 0 when everything the main job needs is present."""
    rows: list[tuple[bool, bool, str, str, str]] = []  # ok, required, what, detail, fix

    py_ok = sys.version_info[:2] >= (3, 10)
    rows.append((py_ok, True, "python", sys.version.split()[0], "use Python 3.10 or newer"))
    for mod, required, fix in (
        ("torch", True, "pip install torch==2.13.0"),
        ("numpy", True, SETUP),
        ("mido", True, SETUP),
        ("music21", True, SETUP),
        ("scipy", True, SETUP),
        ("matplotlib", False, "pip install matplotlib (needed for --plot)"),
        ("tqdm", True, SETUP),
        ("zmq", False, "pip install pyzmq (deep-musician serve, --engine)"),
        ("msgpack", False, "pip install msgpack (deep-musician serve, --engine)"),
        ("torch.utils.tensorboard", False, "pip install tensorboard (training logs)"),
    ):
        ok, detail = _module(mod)
        rows.append((ok, required, mod, detail, fix))

    try:
        from bridge.synth import find_soundfont

        sf = find_soundfont()
    except Exception:
        sf = None
    rows.append((sf is not None, False, "soundfont", str(sf) if sf else "not found",
                 "apt-get install fluid-soundfont-gm, or set DEEP_MUSICIAN_SOUNDFONT"))

    try:
        from bridge.synth import available

        problem = available()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    rows.append((not problem, False, "performer", problem or "libfluidsynth and a SoundFont",
                 "apt-get install fluidsynth fluid-soundfont-gm (deep-musician perform, arrange --render, "
                 "Render mode)"))

    dpf = next((p for p in ("/usr/share/dpf", "/usr/src/dpf") if Path(p).is_dir()), None)
    zmq_dev = shutil.which("pkg-config") is not None and subprocess.run(
        ["pkg-config", "--exists", "libzmq"], capture_output=True).returncode == 0
    rows.append((bool(dpf) and zmq_dev, False, "plugin build", f"DPF {dpf or 'missing'}, libzmq-dev "
                 f"{'ok' if zmq_dev else 'missing'}", "bash scripts/setup.sh --dev (make -C plugin_stub)"))

    try:
        from engine.registry import Registry

        reg = Registry(model_dirs).load_all()
        usable = reg.usable()
        broken = [e for e in reg.entries if not e.ok]
        detail = f"{len(usable)} usable" + (f", {len(broken)} broken" if broken else "")
        rows.append((bool(usable), True, "models", detail, "git checkout models/pretrained"))
        for e in broken:
            rows.append((False, False, f"  {e.path.name}", e.error, "re-export or remove it"))
    except Exception as exc:
        rows.append((False, True, "models", f"{type(exc).__name__}: {exc}", SETUP))

    try:
        from models.data.corpus import data_dir

        root = data_dir()
        built = [*sorted(p.stem for p in root.glob("*.npz")),  # the arranger's sets, then the others
                 *(f"multitrack/{p.name}" for p in sorted(root.glob("multitrack/*")) if any(p.glob("*.npz"))),
                 *(f"performance/{p.parent.name}" for p in sorted(root.glob("performance/*/index.json")))]
        rows.append((bool(built), False, "training data", ", ".join(built) or f"none in {root}",
                     "deep-musician data build bach (only needed to train)"))
    except Exception as exc:
        rows.append((False, False, "training data", str(exc), SETUP))

    from models.performer.listen import needs

    lacking = needs()
    rows.append((not lacking, False, "listening evaluation",
                 f"no {', '.join(lacking)}" if lacking else "basic-pitch (ONNX), pyin, mir_eval",
                 f"{SETUP} --dev (only needed to evaluate renders)"))

    width = max(len(r[2]) for r in rows)
    for ok, required, what, detail, fix in rows:
        mark = "ok  " if ok else ("MISS" if required else "warn")
        line = f"[{mark}] {what:<{width}}  {detail}"
        if not ok:
            line += f"  -> {fix}"
        print(line)
    missing = [r for r in rows if r[1] and not r[0]]
    print("everything the main job needs is here" if not missing
          else f"{len(missing)} required item(s) missing")
    return 1 if missing else 0
