from __future__ import annotations

import json

from models.data.splits import SPLIT_NAMES, SPLITS_DIR, make_split, work_of


def test_committed_splits_are_disjoint_8_1_1_by_work():
    for name in ("bach", "quartets"):
        lists = json.loads((SPLITS_DIR / f"{name}.json").read_text())
        works = {s: {work_of(n) for n in lists[s]} for s in SPLIT_NAMES}
        assert not works["train"] & works["test"] and not works["valid"] & works["test"]
        assert not works["train"] & works["valid"]
        total = sum(len(v) for v in works.values())
        assert len(works["train"]) / total > 0.7 and works["test"] and works["valid"]


def test_make_split_is_deterministic():
    names = [f"bach/bwv{i}.mxl" for i in range(100)]
    assert make_split(names) == make_split(list(reversed(names)))
