"""Deep Musician models (torch): one package per model family, beside what the families share.

- ``format``: the model file format the engine loads (metadata check, loaders); no training code.
- ``arranger/``: part separation (model, features, decoding, training, evaluation, export).
  ``composer/`` and ``performer/`` go beside it, each owning the same stages for its task.
- ``data/``: corpus and split builders the families train on.
- ``ensembles``: the ensembles an arrangement can target (shared by the data and the families).
- ``configs/`` training configs, ``pretrained/`` the shipped model files with a model card each.
"""
