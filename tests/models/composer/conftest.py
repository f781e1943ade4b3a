"""MultiPiece-like fixtures from the built Bach chorales (until models.data.multitrack lands) and a
tiny untrained composer, eager and exported."""
from __future__ import annotations

import numpy as np
import pytest
import torch

INSTRUMENTS = ["soprano", "alto", "tenor", "bass"]


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Small decoders step ~40x faster on one thread than on two on the shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def bach_multitrack():
    """The composer tests read the music21 corpus's chorales as the built multitrack ``bach`` set:
    built once where it is missing (about 30 s; resumable; ``$DEEP_MUSICIAN_DATA``), so a fresh
    machine runs these tests instead of skipping them."""
    from models.data import multitrack

    try:
        multitrack.load("bach", "valid")
    except FileNotFoundError:
        multitrack.build("bach", jobs=2, progress=False)


@pytest.fixture(scope="session")
def chorales():
    from models.composer.data import load_pieces

    try:
        pieces = load_pieces("bach", "valid", 20)
    except FileNotFoundError:
        pytest.skip("the bach set is not built (deep-musician data build bach)")
    return [p for p in pieces if list(p.instruments) == INSTRUMENTS][:12]


def make_tiny(block_size: int = 96, controls: bool = False):
    """A tiny untrained composer; ``controls``: with the DENSITY tokens and conditions at every bar."""
    from models.composer.model import Composer, ComposerConfig
    from models.composer.representations import make_tokenizer
    from models.composer.tokens import TokenizerConfig

    torch.manual_seed(0)
    tcfg = TokenizerConfig.for_instruments("ours", INSTRUMENTS, repeat_conditions=controls, density=controls)
    factors = make_tokenizer(tcfg).factors()
    mcfg = ComposerConfig(vocab_size=len(make_tokenizer(tcfg)), block_size=block_size, d_model=32,
                          n_layers=2, n_heads=2, dropout=0.0,
                          factor_sizes=tuple(int(v.max()) + 1 for v in factors.values()))
    return Composer(mcfg, torch.from_numpy(np.stack(list(factors.values())))).eval(), mcfg, tcfg


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny()


@pytest.fixture(scope="session")
def tiny_composer_file(tmp_path_factory):
    from models.composer.export import composer_metadata, export_composer

    model, mcfg, tcfg = make_tiny()
    path = tmp_path_factory.mktemp("composer") / "composer-tiny.pt"
    return export_composer(model, path, composer_metadata(mcfg, tcfg, path.stem))


@pytest.fixture(scope="session")
def tiny_controls_file(tmp_path_factory):
    """An exported tiny composer whose tokens carry DENSITY (the shipped model's tokenizer)."""
    from models.composer.export import composer_metadata, export_composer

    model, mcfg, tcfg = make_tiny(controls=True)
    path = tmp_path_factory.mktemp("composer") / "composer-tiny-controls.pt"
    return export_composer(model, path, composer_metadata(mcfg, tcfg, path.stem))
