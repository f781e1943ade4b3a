"""Datasets the model families train on, built from the music21 corpus or a user's folder.

``corpus`` converts scores into note arrays with part labels; ``splits`` holds the committed
train/valid/test lists (``split_lists/*.json``) and the rule for files they do not name.

The tick grid lives here because the data is converted at it: a family's features read it as the
default resolution of the models trained on that data.
"""
from __future__ import annotations

RESOLUTION = 24  # ticks per quarter, as in the Arranger paper


def worker_pool(jobs: int):
    """The process pool a build converts or renders files in: ``jobs`` workers (at least one),
    started from a fresh process (``forkserver``, or ``spawn`` where there is none), not forked
    from this one. A fork copies a process whose OpenMP pool has threads (torch's ``libgomp``, which
    FluidSynth shares once torch is loaded) without the threads, and the child's first parallel
    region then waits for them for ever: ``fluid_synth_sfload`` hung a performance build that way
    after other work in the same process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=multiprocessing.get_context(method))
