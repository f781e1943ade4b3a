"""The JACK standalone and the LV2 (in jalv) in real time under a private dummy jackd: every note
played comes back (as audio in Render, on the MIDI output in Arrange), note-to-audio latency
stays within a few periods of the latency the plugin reports, and the LV2's latency reaches JACK
(as it reaches Ardour) in both modes. Needs jackd2, jalv and
libjack-jackd2-dev (scripts/setup.sh --dev). jackd runs with SCHED_FIFO where it may (root): on two
cores shared with other work, --no-realtime gave 100+ xruns and notes seconds late."""
from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.plugin_latency import (
    JackServer,
    build_probe,
    onsets,
    render_latency,
    run_probe,
    start_plugin,
    stop,
)

PITCHES = [60, 64, 67, 72, 76, 79, 72, 60]  # 0.5 s apart, 0.2 s each


@pytest.fixture(scope="module")
def jack(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JackServer, Path]]:
    if shutil.which("jackd") is None or not Path("/usr/include/jack/jack.h").exists():
        pytest.skip("apt-get install jackd2 libjack-jackd2-dev to run the plugin under JACK")
    probe = build_probe(tmp_path_factory.mktemp("jack"))
    server = JackServer(rate_hz=48000, period=256, realtime=True)
    yield server, probe
    server.stop()


def _play(jack: tuple[JackServer, Path], real_engine, host: str, mode: str, tmp_path: Path):
    server, probe = jack
    endpoint, _ = real_engine
    rtt_log = tmp_path / "rtt.log"
    proc, client = start_plugin(host, server, endpoint, mode, rtt_log, tmp_path)
    try:
        time.sleep(1.0)  # connected, and the engine's first render session made (a synth each)
        played = run_probe(probe, server, client, PITCHES, work=tmp_path)
    finally:
        stop(proc)
    rtts = [int(line.split()[1]) for line in rtt_log.read_text().splitlines()] if rtt_log.exists() else [0]
    played.rtt_note = f"engine round trips: {len(rtts)}, max {max(rtts) / 1000:.1f} ms, " \
                      f"over 10 ms: {sum(r > 10_000 for r in rtts)}"
    return played


def _check_rendered(played) -> None:
    latency = render_latency(played.period, played.rate_hz)
    found = onsets(played)
    assert all(f is not None for f in found), \
        f"notes without sound: {found} (xruns {played.xruns}; {played.rtt_note})"
    heard = np.array(found)
    # The reported latency, plus the piano's attack to -60 dBFS (< 1 period), when the engine's
    # reply is in time. Without real-time scheduling, on two cores shared with the engine (and
    # whatever else runs), a block now and then misses its slot (xruns) and a note sounds late:
    # the median is held to the latency, every note to being heard (benchmarks/plugin_latency.py
    # measures the spread).
    assert np.median(heard) <= latency + played.period, \
        f"note-to-audio frames {found}, latency {latency}, xruns {played.xruns}; {played.rtt_note}"
    assert heard.min() >= latency, f"sound before the reported latency: {found}"


@pytest.mark.slow
def test_jack_standalone_renders_every_note_in_real_time(jack, real_engine, tmp_path: Path) -> None:
    _check_rendered(_play(jack, real_engine, "jack", "render", tmp_path))


@pytest.mark.slow
def test_lv2_in_jalv_renders_every_note_in_real_time(jack, real_engine, tmp_path: Path) -> None:
    if shutil.which("jalv") is None:
        pytest.skip("apt-get install jalv to run the LV2 in a host")
    _check_rendered(_play(jack, real_engine, "lv2", "render", tmp_path))


@pytest.mark.slow
def test_jack_standalone_arranges_every_note_in_real_time(jack, real_engine, tmp_path: Path) -> None:
    played = _play(jack, real_engine, "jack", "arrange", tmp_path)
    ons = [m for m in played.midi if m[1] & 0xF0 == 0x90 and m[3] > 0]
    offs = [m for m in played.midi if m[1] & 0xF0 == 0x80]
    assert sorted(m[2] for m in ons) == sorted(PITCHES), f"arranged note-ons {ons}"
    assert sorted((m[1] & 0x0F, m[2]) for m in offs) == sorted((m[1] & 0x0F, m[2]) for m in ons)
    # Arrange's default 20 ms of headroom in whole periods (plugin_stub/README.md): never earlier than
    # that; later only when the engine missed the slot (test_arrange_latency.py holds it to the sample).
    latency = played.period * -(-int(0.020 * played.rate_hz) // played.period)
    for (frame, pitch), on in zip(played.notes, sorted(ons)):
        assert on[2] == pitch and frame + latency <= on[0] <= frame + latency + 8 * played.period, \
            f"{pitch} at {frame}: {on} (latency {latency}; {played.rtt_note})"


def _jack_port_latency(env: dict[str, str], port: str) -> int:
    """The playback latency JACK holds for `port` (`jack_lsp -l`: "port playback latency = [ lo hi ]")."""
    lines = subprocess.run(["jack_lsp", "-l", port], env=env, capture_output=True, text=True,
                           timeout=10).stdout
    for line in lines.splitlines():
        if "playback latency" in line:
            return int(line.split("[")[1].split()[1])
    raise AssertionError(f"jack_lsp shows no latency for {port}: {lines}")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["arrange", "render"])
def test_lv2_in_jalv_reports_its_latency_to_jack(jack, mode: str, tmp_path: Path) -> None:
    # Ardour and jalv read an LV2's latency from its lv2:reportsLatency port; jalv hands it to JACK's
    # latency API, where every JACK client sees it. Arrange: 20 ms in whole periods; Render: 6 ms.
    if shutil.which("jalv") is None or shutil.which("jack_lsp") is None:
        pytest.skip("apt-get install jalv jackd2 to run the LV2 in a host")
    server, _ = jack
    proc, client = start_plugin("lv2", server, "tcp://127.0.0.1:9", mode, None, tmp_path)
    try:
        time.sleep(0.5)  # jalv sets the port latencies on its first latency callback
        reported = _jack_port_latency(server.env, f"{client}:lv2_events_out")
    finally:
        stop(proc)
    period, rate_hz = 256, 48000
    want = (period * math.ceil(0.020 * rate_hz / period) if mode == "arrange"
            else render_latency(period, rate_hz))
    assert reported == want, f"{mode}: JACK says {reported} frames, the plugin's rule {want}"
