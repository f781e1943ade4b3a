"""How soon a `perform` stream starts playing: the time from sending the request to the first `audio`
reply, over a real socket to a warm `deep-musician serve` (issue 18 target: the first streamed chunk
within 100 ms), for each renderer (SoundFont, neural), raw and levelled, beside the whole job's time.

A levelled render (the default: -18 LUFS, true peak at most -1 dBTP) must measure the whole render's
loudness before it can send the first sample, so its first chunk waits for a whole render; a raw one
(`raw_level`, CLI `--loudness raw`; a DAW track has its own fader) streams as it renders. The
baseline, in the same run and process: the neural chain's first chunk with the short first chunk
against the one-size chunks it had before (``neural in process``).

    python -m benchmarks.perform_first_chunk --repeats 5 --out benchmarks/perform_first_chunk.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import publish
from benchmarks.protocol_rtt import run_info, start_engine
from bridge import protocol
from bridge.client import Client

PIECES = {  # name -> a music21 corpus score or a file of the repository
    "folk tune (ryansMammoth/7thRegimentReel.abc, 1 part)": "ryansMammoth/7thRegimentReel.abc",
    "Bach chorale BWV 66.6 (4 parts)": "bach/bwv66.6.mxl",
    "examples/piano.mid": "examples/piano.mid",
}
SAMPLE_RATE_HZ = 48_000
ROOT = Path(__file__).resolve().parent.parent


def score_input(name: str):
    from bridge.scorefile import read_score
    from engine.cli.perform import performance_input

    path = ROOT / name
    if not path.exists():
        from music21 import corpus

        path = corpus.getWork(name)
    return performance_input(read_score(str(path)))


def one_job(client: Client, notes, parts, programs, fields: dict) -> dict:
    t0 = time.perf_counter()
    first, samples = None, 0
    for reply in client.stream(protocol.PERFORM, [notes, parts], sample_rate_hz=SAMPLE_RATE_HZ,
                               resolution=1000, qpm=60.0, programs=programs, **fields):
        if reply.type == protocol.AUDIO:
            first = first if first is not None else time.perf_counter() - t0
            samples += reply.frame("audio").shape[1]
    return {"first_ms": first * 1000, "wall_s": time.perf_counter() - t0, "audio_s": samples / SAMPLE_RATE_HZ}


def in_process(notes, parts, repeats: int) -> dict:
    """The neural chain's first chunk in this process (no socket), with the short first chunk the
    engine asks for (``FIRST_CHUNK_FRAMES``) against one-size chunks (``CHUNK_FRAMES``, as before)."""
    import torch

    from models.performer.expression import from_score_notes
    from models.performer.neural import CHUNK_FRAMES, FIRST_CHUNK_FRAMES, NeuralRenderer

    torch.set_num_threads(1)
    renderer = NeuralRenderer.load()
    marked = from_score_notes(notes, parts, 1000)
    out = {}
    for name, frames in (("short first chunk", FIRST_CHUNK_FRAMES), ("one-size chunks", CHUNK_FRAMES)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            next(renderer.render_chunks(marked, 60.0, first_chunk_frames=frames))
            times.append(1000 * (time.perf_counter() - t0))
        out[name] = {"first_chunk_frames": frames, "first_chunk_ms_median": round(float(np.median(times)), 1)}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="jobs per case (default %(default)s)")
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    info = run_info()
    cases = {"soundfont raw": {"raw_level": True}, "soundfont levelled": {},
             "neural raw": {"renderer": "neural", "raw_level": True},
             "neural levelled": {"renderer": "neural"}}
    proc, endpoint = start_engine({"OMP_NUM_THREADS": "1"})
    results: dict = {}
    try:
        with Client(endpoint, timeout_s=300) as client:
            inputs = {name: score_input(path) for name, path in PIECES.items()}
            warm = next(iter(inputs.values()))
            for fields in cases.values():  # load the models and make the synths before timing
                one_job(client, *warm, fields)
            for name, (notes, parts, programs) in inputs.items():
                results[name] = {}
                for case, fields in cases.items():
                    runs = [one_job(client, notes, parts, programs, fields) for _ in range(args.repeats)]
                    first = np.array([r["first_ms"] for r in runs])
                    results[name][case] = {
                        "first_chunk_ms_median": round(float(np.median(first)), 1),
                        "first_chunk_ms_max": round(float(first.max()), 1),
                        "job_wall_s_median": round(float(np.median([r["wall_s"] for r in runs])), 3),
                        "audio_s": round(runs[0]["audio_s"], 2)}
                    print(name, case, results[name][case], file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    for name, (notes, parts, _) in inputs.items():
        results[name]["neural in process"] = in_process(notes, parts, args.repeats)
        print(name, results[name]["neural in process"], file=sys.stderr)
    info["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {**info, "sample_rate_hz": SAMPLE_RATE_HZ, "repeats": args.repeats, "results": results}
    return publish(report, args.out)


if __name__ == "__main__":
    main()
