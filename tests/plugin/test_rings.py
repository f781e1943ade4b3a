"""The plugin's lock-free rings (plugin_stub/AudioRing.hpp, SpscRing.hpp) through ring_check.cpp:
AudioRing against a model (a frame reads back only while its slot still holds it), and both under
two threads."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent


class RingCheck:
    def __init__(self, exe: Path) -> None:
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, command: str, lines: int = 1) -> list[str]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return [self.proc.stdout.readline().strip() for _ in range(lines)]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def ring_check(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RingCheck]:
    exe = tmp_path_factory.mktemp("rings") / "ring_check"
    subprocess.run(["g++", "-std=c++17", "-O2", "-pthread", str(HERE / "ring_check.cpp"), "-o", str(exe)],
                   check=True, timeout=120)
    check = RingCheck(exe)
    yield check
    check.close()


ops = st.lists(st.tuples(st.sampled_from("wr"), st.integers(-8, 200), st.integers(1, 40)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 64), ops=ops)
def test_audio_ring_reads_back_what_its_slots_still_hold(ring_check: RingCheck, capacity: int,
                                                         ops: list[tuple[str, int, int]]) -> None:
    size = int(ring_check.ask(f"audio {capacity}")[0].split()[1])
    assert size >= capacity and size & (size - 1) == 0
    slots: dict[int, int] = {}  # slot -> the frame written there last
    for op, start, n in ops:
        if op == "w":
            if start < 0:
                continue  # the worker writes blocks at frames >= 0 only
            ring_check.ask(f"w {start} {n}", 0)
            for f in range(start, start + n):
                slots[f % size] = f
        else:
            present, values = ring_check.ask(f"r {start} {n}", 2)
            held = [f >= 0 and slots.get(f % size) == f for f in range(start, start + n)]
            want = [float(start + i) if h else 0.0 for i, h in enumerate(held)]
            assert [float(v) for v in values.split()] == want
            assert int(present.split()[1]) == sum(held)


@pytest.mark.parametrize(("block", "latency", "wait"), [(256, 768, 1), (64, 64, 0), (256, 768, 0)])
def test_audio_ring_is_never_torn_across_threads(ring_check: RingCheck, block: int, latency: int,
                                                 wait: int) -> None:
    blocks = 2000
    torn, present = ring_check.ask(f"stress {blocks} {block} {latency} {wait}")[0].split()[1::2]
    assert int(torn) == 0
    if wait:  # offline wait: every frame from 0 on arrives in time
        assert int(present) == blocks * block - latency


def test_spsc_ring_delivers_every_item_once_in_order(ring_check: RingCheck) -> None:
    assert ring_check.ask("spsc 16 100000")[0] == "spsc ok"
