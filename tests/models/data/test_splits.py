from __future__ import annotations

import json

from models.data.splits import SPLIT_NAMES, SPLITS_DIR, corpus_work, load_split_file, make_split, work_of


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


def test_renaissance_keeps_every_work_in_one_split():
    """Movements and halves of one Palestrina Mass (numbered per movement type, so only the
    ``!!!OPR`` title says which Mass), a madrigal's partes, a file and its ``_old`` copy: one split."""
    from models.data.corpus import SPLIT_BY_WORK_SEED, corpus_files

    files = corpus_files("renaissance")
    works = {name: corpus_work(path, name) for path, name in files}
    committed = load_split_file("renaissance")
    assert set(committed) == set(works)
    split_of_work: dict[str, set[str]] = {}
    for name, work in works.items():
        split_of_work.setdefault(work, set()).add(committed[name])
    assert not {w: s for w, s in split_of_work.items() if len(s) > 1}
    for name, work in (("palestrina/Kyrie_05_a.krn", "palestrina/missa aspice domine"),
                       ("palestrina/Credo_05_b.krn", "palestrina/missa aspice domine"),
                       ("monteverdi/madrigal.3.1_old.mxl", "monteverdi/madrigal.3.1"),
                       ("monteverdi/madrigal.5.6.mxl", "monteverdi/Ecco Silvio"),
                       ("trecento/PMFC_23_15b-Kyrie Humano Generi b.xml",
                        "trecento/PMFC_23_15-Kyrie Humano Generi")):
        assert works[name] == work
    counts = {s: sum(1 for v in committed.values() if v == s) for s in SPLIT_NAMES}
    assert all(abs(counts[s] / len(committed) - share) < 0.02
               for s, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)))
    # the committed list is what the split code makes from the corpus
    made = make_split(sorted(works), SPLIT_BY_WORK_SEED["renaissance"], works)
    assert {n: s for s in SPLIT_NAMES for n in made[s]} == committed


def test_make_split_by_works_deals_whole_works_to_8_1_1():
    works = {f"w{w}/f{i}": f"w{w}" for w in range(60) for i in range(1 + w % 7)}
    split = make_split(sorted(works), seed=3, works=works)
    by_work = {}
    for s in SPLIT_NAMES:
        for n in split[s]:
            by_work.setdefault(works[n], set()).add(s)
    assert all(len(s) == 1 for s in by_work.values())
    assert split["test"] and split["valid"] and len(split["train"]) / len(works) > 0.7
    assert split == make_split(list(reversed(sorted(works))), seed=3, works=works)
