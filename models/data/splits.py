"""Train/valid/test splits by work, committed as lists (``split_lists/<set>.json``) so every
machine trains and tests on the same works; files the lists do not name are split by a hash."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

SPLITS_DIR = Path(__file__).parent / "split_lists"
SPLIT_NAMES = ("train", "valid", "test")


def work_of(name: str) -> str:
    """The work a file belongs to: movements of one quartet share a split."""
    parts = name.split("/")
    if len(parts) > 2 and parts[-1].startswith("movement"):
        return "/".join(parts[:-1])
    return name.rsplit(".", 1)[0] if parts[0] != "bach" else name


def make_split(names: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Deterministic 8:1:1 split by work; valid and test get at least one work each."""
    works = sorted({work_of(n) for n in names})
    random.Random(seed).shuffle(works)
    n_test = max(1, round(len(works) * 0.1))
    n_valid = max(1, round(len(works) * 0.1))
    test, valid = set(works[:n_test]), set(works[n_test:n_test + n_valid])
    split = {s: [] for s in SPLIT_NAMES}
    for n in sorted(names):
        w = work_of(n)
        split["test" if w in test else "valid" if w in valid else "train"].append(n)
    return split


def hash_split(name: str) -> str:
    """Split for a file that no committed list names (a user's folder, a newer corpus)."""
    h = int(hashlib.sha1(work_of(name).encode()).hexdigest(), 16) % 10
    return "test" if h == 9 else "valid" if h == 8 else "train"


def load_split_file(set_name: str) -> dict[str, str]:
    path = SPLITS_DIR / f"{set_name}.json"
    if not path.exists():
        return {}
    lists = json.loads(path.read_text())
    return {n: s for s in SPLIT_NAMES for n in lists[s]}


def write_split_file(set_name: str, lists: dict[str, list[str]]) -> dict[str, str]:
    """Commit-ready lists for a set; returns them as ``load_split_file`` would read them back."""
    SPLITS_DIR.mkdir(exist_ok=True)
    (SPLITS_DIR / f"{set_name}.json").write_text(json.dumps(lists, indent=1) + "\n")
    return {n: s for s in SPLIT_NAMES for n in lists[s]}
