"""Datasets the model families train on, built from the music21 corpus or a user's folder.

``corpus`` converts scores into note arrays with part labels; ``splits`` holds the committed
train/valid/test lists (``split_lists/*.json``) and the rule for files they do not name.

The tick grid lives here because the data is converted at it: a family's features read it as the
default resolution of the models trained on that data.
"""
from __future__ import annotations

RESOLUTION = 24  # ticks per quarter, as in the Arranger paper
