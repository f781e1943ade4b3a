"""Train/valid/test splits by work, committed as lists (``split_lists/<set>.json``) so every
machine trains and tests on the same works; files the lists do not name are split by a hash."""
from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

SPLITS_DIR = Path(__file__).parent / "split_lists"
SPLIT_NAMES = ("train", "valid", "test")


def work_of(name: str) -> str:
    """The work a file belongs to: movements of one quartet share a split."""
    parts = name.split("/")
    if len(parts) > 2 and parts[-1].startswith("movement"):
        return "/".join(parts[:-1])
    return name.rsplit(".", 1)[0] if parts[0] != "bach" else name


# Corpus files that belong to one work though their names do not say so: the partes of a
# madrigal cycle (read from the lyrics' first words and the books' published order), Mass
# movements paired by their composer, settings of one trope. Keys are names without suffix.
SAME_WORK = {
    **dict.fromkeys([f"monteverdi/madrigal.3.{i}" for i in (8, 9, 10)], "monteverdi/Vattene pur crudel"),
    **dict.fromkeys([f"monteverdi/madrigal.3.{i}" for i in (15, 16, 17)],
                    "monteverdi/Vivro fra i miei tormenti"),
    **dict.fromkeys([f"monteverdi/madrigal.3.{i}" for i in (19, 20)], "monteverdi/Rimanti in pace"),
    **dict.fromkeys([f"monteverdi/madrigal.4.{i}" for i in (6, 7)], "monteverdi/Anima mia perdona"),
    **dict.fromkeys([f"monteverdi/madrigal.5.{i}" for i in range(4, 9)], "monteverdi/Ecco Silvio"),
    **dict.fromkeys(["trecento/PMFC_13_03-Gloria Micinella", "trecento/PMFC_13_04-Credo Cursor"],
                    "trecento/Zacara Gloria Micinella + Credo Cursor"),
    # Ciconia's Glorias and Credos (PMFC 24 nos. 1-11) come in pairs; kept together as one work
    **dict.fromkeys([
        "trecento/PMFC_24_1-Gloria Ciconia 1", "trecento/PMFC_24_2-Credo Ciconia 2",
        "trecento/PMFC_24_3-Gloria Ciconia 3", "trecento/PMFC_24_4-Credo Ciconia 4",
        "trecento/PMFC_24_5-Gloria_Spiritus_et_alme", "trecento/PMFC_24_6-Gloria_Spiritus_et_alme",
        "trecento/PMFC_24_7-Gloria_Suscipe_trinitas", "trecento/PMFC_24_8-Gloria Ciconia 8",
        "trecento/PMFC_24_9-Gloria Ciconia 9", "trecento/PMFC_24_10-Credo Ciconia 10",
        "trecento/PMFC_24_11-Credo Ciconia 11", "trecento/PMFC_13_17-Gloria Spiritus et Alme",
        "trecento/PMFC_13_18-Gloria Spiritus et Alme"], "trecento/Ciconia Gloria-Credo pairs"),
    **dict.fromkeys(["trecento/PMFC_13_01-Kyrie-Summe-Clementissime",
                     "trecento/PMFC_23_22-Kyrie Summe Clementissime"], "trecento/Kyrie Summe Clementissime"),
}
_COPY = re.compile(r"_(old|bak)$")  # a second edition of the same file
_PART = re.compile(r"(?<=\d)[a-c](?=$|[-_ ])|[-_ ][a-i]$")  # halves/sections: 03a, 15b, _a, " b"
_YEAR = re.compile(r"\s*\([^)]*\)")  # "Missa Ave Maria (1594)": same-titled Masses kept together


def corpus_work(path: str | Path, name: str) -> str:
    """The work a corpus file belongs to, for a split that keeps every movement, section and
    edition of one work together: a Humdrum file's Mass or work title (``!!!OPR``; Palestrina's
    movements are numbered per movement type, not per Mass), else ``SAME_WORK``, else the name
    without suffix, edition (``_old``, ``_bak``) or section letter (``_a``, ``03b``)."""
    if str(path).endswith(".krn"):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("!!!OPR"):
                    title = _YEAR.sub("", line.split(":", 1)[1]).strip().lower()
                    return f"{name.split('/')[0]}/{title}"
                if not line.startswith("!"):
                    break
    stem = name.rsplit(".", 1)[0]
    if stem in SAME_WORK:
        return SAME_WORK[stem]
    return _PART.sub("", _COPY.sub("", stem))


def make_split(names: list[str], seed: int = 0, works: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Deterministic 8:1:1 split by work; valid and test get at least one work each.

    With ``works`` (name -> work, e.g. from ``corpus_work``) the works are dealt in a shuffled
    order to the split furthest below its share of files, so works of very different sizes (a
    Mass of 26 files, a madrigal of one) still give 8:1:1 by files."""
    if works is None:
        works = {n: work_of(n) for n in names}
        ordered = sorted(set(works.values()))
        random.Random(seed).shuffle(ordered)
        n_test = max(1, round(len(ordered) * 0.1))
        n_valid = max(1, round(len(ordered) * 0.1))
        chosen = (dict.fromkeys(ordered[:n_test], "test")
                  | dict.fromkeys(ordered[n_test:n_test + n_valid], "valid"))
    else:
        sizes: dict[str, int] = {}
        for n in names:
            sizes[works[n]] = sizes.get(works[n], 0) + 1
        ordered = sorted(sizes)
        random.Random(seed).shuffle(ordered)
        share = {"train": 0.8, "valid": 0.1, "test": 0.1}
        placed = dict.fromkeys(SPLIT_NAMES, 0)
        chosen = {}
        for i, w in enumerate(ordered):
            # the first two works seed test and valid; then the split furthest below its share
            s = ("test", "valid")[i] if i < 2 else max(
                SPLIT_NAMES, key=lambda s: share[s] * (sum(placed.values()) + sizes[w]) - placed[s])
            chosen[w] = s
            placed[s] += sizes[w]
    split = {s: [] for s in SPLIT_NAMES}
    for n in sorted(names):
        split[chosen.get(works[n], "train")].append(n)
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
