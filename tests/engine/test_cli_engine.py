"""The program from the outside, as a new user meets it: endpoints without a scheme, a busy port, no
engine listening, CurveZMQ keys missing or wrong, where keys are written, model folders that do
not exist or shadow the shipped models, --version, and what the engine logs per live block. Real
processes on real loopback sockets; each error is one sentence and exit status 2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from bridge.client import Client, EngineKeysError, EngineUnreachable, normalize_endpoint
from bridge.score import make_notes
from tests.engine.test_server import Engine, free_port

ROOT = Path(__file__).resolve().parents[2]
PIANO = ROOT / "examples" / "piano.mid"


def run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def one_sentence_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deep-musician: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine(tmp_path_factory.mktemp("engine")).wait_ready()
    yield e
    e.stop()


# --- endpoints ----------------------------------------------------------------------------------

def test_an_endpoint_without_a_scheme_means_tcp():
    assert normalize_endpoint("localhost:5555") == "tcp://localhost:5555"
    assert normalize_endpoint("tcp://127.0.0.1:5555") == "tcp://127.0.0.1:5555"
    assert normalize_endpoint("ipc:///tmp/dm") == "ipc:///tmp/dm"
    for bad in ("localhost", "http://localhost:5555", "tcp://:5555", "localhost:port"):
        with pytest.raises(ValueError, match="endpoint"):
            normalize_endpoint(bad)


@pytest.mark.timeout(300)
def test_every_verb_takes_host_and_port_alone(engine, tmp_path):
    host_port = f"localhost:{engine.port}"
    r = run("status", "--engine", host_port)
    assert r.returncode == 0 and f"tcp://{host_port}" in r.stdout, r.stderr
    out = tmp_path / "satb.mid"
    r = run("arrange", str(PIANO), "-o", str(out), "--engine", host_port)
    assert r.returncode == 0 and out.is_file(), r.stderr


# --- no engine, a busy port ---------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_no_engine_listening_is_said_at_once_not_after_timeouts():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Client(endpoint, timeout_s=10.0) as c:
        start = time.monotonic()
        with pytest.raises(EngineUnreachable, match="no engine answers at") as err:
            c.ping()
        took_s = time.monotonic() - start
    assert took_s < 1.0, f"{took_s:.2f} s to say no engine answers"
    assert c.reconnects == 0 and "deep-musician serve --endpoint" in str(err.value)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("verb", ["status", "arrange"])
def test_cli_with_no_engine_fails_in_one_sentence_without_waiting_for_timeouts(verb, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    out = tmp_path / "out.mid"
    args = ["status"] if verb == "status" else ["arrange", str(PIANO), "-o", str(out)]
    start = time.monotonic()
    r = run(*args, "--engine", endpoint, "--timeout", "30")  # a timeout would take 4 x 30 s
    took_s = time.monotonic() - start
    line = one_sentence_error(r)
    assert f"no engine answers at tcp://{endpoint}" in line and "deep-musician serve" in line
    assert "reconnected" not in r.stderr and not out.exists()
    assert took_s < 30, f"{verb} took {took_s:.1f} s"  # start-up included, on a busy machine


@pytest.mark.timeout(300)
def test_a_second_serve_on_a_busy_port_is_refused_before_models_load(tmp_path):
    broken = tmp_path / "models"
    broken.mkdir()
    (broken / "broken.pt").write_bytes(b"not a model")  # loading it would log model_skipped
    ctx = zmq.Context()
    busy = ctx.socket(zmq.ROUTER)
    port = busy.bind_to_random_port("tcp://127.0.0.1")
    try:
        r = run("serve", "--endpoint", f"127.0.0.1:{port}", "--models", str(broken))
    finally:
        busy.close(linger=0)
        ctx.term()
    line = one_sentence_error(r)
    assert f"tcp://127.0.0.1:{port} is already in use" in line and "--endpoint" in line
    assert "model_skipped" not in r.stdout + r.stderr and "engine ready" not in r.stdout


# --- CurveZMQ keys ------------------------------------------------------------------------------

def _keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The engine's folder, an authorised client's and a stranger's (a key the engine lacks)."""
    server, client, stranger = tmp_path / "server-keys", tmp_path / "client-keys", tmp_path / "stranger"
    for folder, name in ((server, "server"), (client, "client"), (stranger, "client")):
        r = run("keys", str(folder), "--name", name)
        assert r.returncode == 0, r.stderr
    (server / "clients").mkdir()
    shutil.copy(client / "client.key", server / "clients" / "client.key")
    for folder in (client, stranger):
        shutil.copy(server / "server.key", folder / "server.key")
    return server, client, stranger


@pytest.mark.timeout(300)
def test_curve_failures_say_which_keys_are_missing_or_wrong(tmp_path):
    server, client, stranger = _keys(tmp_path)
    e = Engine(tmp_path, "--keys", str(server)).wait_ready(keys_dir=client)
    try:
        with Client(e.endpoint, timeout_s=10, keys_dir=client) as c:
            assert c.hello()["capabilities"]
        with Client(e.endpoint, timeout_s=10) as c, pytest.raises(EngineKeysError, match="requires CurveZMQ"):
            c.ping()
        with Client(e.endpoint, timeout_s=10, keys_dir=stranger) as c, \
                pytest.raises(EngineKeysError, match="refused this client's key"):
            c.ping()
        wrong_server = tmp_path / "wrong-server"
        shutil.copytree(client, wrong_server)
        shutil.copy(stranger / "client.key", wrong_server / "server.key")  # some other public key
        with Client(e.endpoint, timeout_s=10, keys_dir=wrong_server) as c, \
                pytest.raises(EngineKeysError, match="not that engine's public key"):
            c.ping()
        line = one_sentence_error(run("status", "--engine", e.endpoint))
        assert "requires CurveZMQ keys" in line and "--engine-keys" in line and "start one" not in line
    finally:
        e.stop()
    plain = Engine(tmp_path).wait_ready()
    try:
        with Client(plain.endpoint, timeout_s=10, keys_dir=client) as c, \
                pytest.raises(EngineKeysError, match="runs without keys|does not use CurveZMQ keys"):
            c.ping()
    finally:
        plain.stop()


def test_keys_go_outside_the_checkout_by_default(tmp_path):
    home = tmp_path / "home"
    r = run("keys", "--name", "server", HOME=str(home), XDG_CONFIG_HOME="")
    assert r.returncode == 0, r.stderr
    keys = home / ".config" / "deep-musician" / "keys"
    assert (keys / "server.key").is_file()
    assert oct((keys / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    assert str(keys) in r.stdout and f"--keys {keys}" in r.stdout


def test_a_secret_key_inside_a_git_checkout_is_refused_unless_forced(tmp_path):
    checkout = tmp_path / "project"
    (checkout / ".git").mkdir(parents=True)
    line = one_sentence_error(run("keys", "engine-keys", cwd=checkout))
    assert "inside the git checkout" in line and "--force" in line
    assert not (checkout / "engine-keys").exists()
    r = run("keys", "engine-keys", "--force", cwd=checkout)
    assert r.returncode == 0 and (checkout / "engine-keys" / "server.key_secret").is_file(), r.stderr


# --- models, version ----------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["models", "arrange"])
def test_a_model_folder_that_does_not_exist_is_an_error(verb, tmp_path):
    missing = tmp_path / "nonexistent"
    out = tmp_path / "out.mid"
    args = ["models"] if verb == "models" else ["arrange", str(PIANO), "-o", str(out)]
    line = one_sentence_error(run(*args, "--models", str(missing)))
    assert f"{missing} (from --models) does not exist" in line and not out.exists()


def test_a_user_model_that_shadows_a_shipped_one_is_named_with_its_path(tmp_path):
    from engine.registry import SHIPPED_DIR

    mine = tmp_path / "my-models"
    mine.mkdir()
    shutil.copy(SHIPPED_DIR / "arranger-satb-offline.pt", mine / "better.pt")
    r = run("models", "--models", str(mine))
    assert r.returncode == 0, r.stderr
    assert f"({mine / 'better.pt'}); shadows {SHIPPED_DIR / 'arranger-satb-offline.pt'}" in r.stdout
    assert f"not used: {mine / 'better.pt'}" in r.stdout
    r = run("arrange", str(PIANO), "-o", str(tmp_path / "out.mid"), "--models", str(mine))
    assert r.returncode == 0, r.stderr
    assert f"from {mine / 'better.pt'}, which shadows" in r.stderr


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip().startswith("deep-musician 0.")


def test_a_one_shot_arrange_loads_only_the_model_it_uses():
    code = ("from engine.registry import Registry\n"
            "reg = Registry()\n"
            "model = reg.find_arranger('satb', 'offline')\n"
            "assert model.module is not None\n"
            "print(sorted(e.path.name for e in reg.entries if e.loaded is not None))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['arranger-satb-offline.pt']"


# --- logs ---------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_live_blocks_log_at_debug_not_info(tmp_path):
    e = Engine(tmp_path).wait_ready()
    try:
        with Client(e.endpoint, timeout_s=30) as c:
            for k in range(3):
                c.live_notes("take", make_notes([24 * k], [60], 24), position_ticks=24 * k,
                             **({"ensemble": "satb"} if k == 0 else {}))
            c.arrange(make_notes([0, 24], [60, 64], 24), "satb")
    finally:
        e.stop()
    log = e.log()
    assert "type=arrange" in log  # batch jobs are still logged at INFO
    assert "type=live_notes" not in log
