"""Composition (issue 16): multi-instrument music written from scratch, over chords, as
accompaniment, continuation or infilling.

Files by stage, as in ``models/arranger/``: tokenisations of a multitrack piece (``tokens``),
grammar and range masks for sampling, the decoder with its KV cache (``model``), sampling
(``inference``), training, export, evaluation metrics (``metrics``) and baselines. The multitrack
training set it reads is built by ``models/data/multitrack.py``.
"""
