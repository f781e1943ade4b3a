"""The CLAP plugin in a small real host (clap_host.cpp): notes go to the engine and come back,
arranged, on the MIDI output, one channel per part, at their positions."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bridge import protocol

HERE = Path(__file__).resolve().parent
SAMPLE_RATE_HZ = 48000
BLOCK = 512
PARAM_OFFLINE_WAIT = 2  # the plugin's kParameterOfflineWait (DPF's CLAP param ids are the indices)
TICK_FRAMES = SAMPLE_RATE_HZ * 60 / 120 / 960  # one tick of the plugin's 960 per quarter, at 120 qpm


@pytest.fixture(scope="session")
def clap_host(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("clap") / "clap_host"
    subprocess.run(["g++", "-std=c++17", "-O1", "-I/usr/share/dpf/distrho/src", str(HERE / "clap_host.cpp"),
                    "-o", str(exe), "-ldl"], check=True, timeout=120)
    return exe


def _play(host: Path, built: Path, endpoint: str, notes: list[tuple[int, int]], blocks: int,
          realtime: bool, offline_wait: bool) -> list[tuple[int, int, int, int]]:
    args = [str(host), str(built / "DeepMusician.clap"), str(SAMPLE_RATE_HZ), str(BLOCK), str(blocks),
            "1" if realtime else "0", f"{PARAM_OFFLINE_WAIT}={int(offline_wait)}", "--",
            *(f"{frame}:{pitch}" for frame, pitch in notes)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30,
                            env={"DEEP_MUSICIAN_ENDPOINT": endpoint, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    events = []
    for line in result.stdout.splitlines():
        kind, *values = line.split()
        assert kind == "midi", f"the plugin made sound or printed {line!r}; it outputs no audio yet"
        events.append(tuple(int(v) for v in values))
    return events


NOTES = [(0, 60), (12000, 64), (24000, 67), (36000, 72), (36000, 48)]


def _check_arranged(events: list[tuple[int, int, int, int]], exact: bool) -> None:
    ons = sorted((e for e in events if e[1] & 0xF0 == 0x90), key=lambda e: (e[0], e[2]))
    offs = [e for e in events if e[1] & 0xF0 == 0x80]
    assert sorted(e[2] for e in ons) == sorted(p for _, p in NOTES), f"note-ons {ons}"
    assert sorted(e[2] for e in offs) == sorted(e[2] for e in ons), "every note-on needs its note-off"
    # The fake engine gives note i of each block part i % 4: the channel says the part.
    by_pitch = {e[2]: e for e in ons}
    assert by_pitch[48][1] & 0x0F != by_pitch[72][1] & 0x0F, "two notes of one chord share a part"
    for frame, pitch in NOTES:
        got = by_pitch[pitch][0]
        if exact:  # offline wait: back in the same block, at the position, within one tick
            assert abs(got - frame) <= TICK_FRAMES, f"pitch {pitch} played at {frame}, came back at {got}"
        else:  # real time: it may come back a few blocks late, never early
            assert frame - TICK_FRAMES <= got <= frame + 8 * BLOCK, f"pitch {pitch}: {frame} -> {got}"


@pytest.mark.slow
def test_clap_offline_wait_returns_every_note_in_place(clap_host: Path, built: Path, fake_engine) -> None:
    events = _play(clap_host, built, fake_engine.endpoint, NOTES, blocks=125, realtime=False,
                   offline_wait=True)
    assert not fake_engine.errors
    _check_arranged(events, exact=True)


@pytest.mark.slow
def test_clap_real_time_returns_every_note_once(clap_host: Path, built: Path, fake_engine) -> None:
    events = _play(clap_host, built, fake_engine.endpoint, NOTES, blocks=125, realtime=True,
                   offline_wait=False)
    assert not fake_engine.errors
    assert any(m.type == protocol.HELLO for m in fake_engine.received)
    _check_arranged(events, exact=False)


@pytest.mark.slow
def test_clap_without_engine_outputs_nothing_and_keeps_running(clap_host: Path, built: Path) -> None:
    events = _play(clap_host, built, "tcp://127.0.0.1:9", NOTES, blocks=125, realtime=False,
                   offline_wait=True)
    assert events == []


@pytest.mark.slow
def test_clap_arranges_through_the_real_engine(clap_host: Path, built: Path, real_engine) -> None:
    endpoint, _ = real_engine
    notes = [(i * 6000, p) for i, p in enumerate([60, 64, 67, 72, 65, 62, 59, 60])]
    events = _play(clap_host, built, endpoint, notes, blocks=150, realtime=False, offline_wait=True)
    ons = [e for e in events if e[1] & 0xF0 == 0x90]
    assert sorted(e[2] for e in ons) == sorted(p for _, p in notes), f"note-ons {ons}"
    assert all(e[1] & 0x0F < 4 for e in ons), "SATB has four parts: channels 0..3"
    for (frame, pitch), on in zip(notes, sorted(ons)):
        assert on[2] == pitch and abs(on[0] - frame) <= TICK_FRAMES, f"{pitch} at {frame} came back as {on}"
