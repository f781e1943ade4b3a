"""The arranger family: part separation of a solo track into an ensemble's parts (Dong et al.,
ISMIR 2021).

``model`` (Arranger, ArrangerConfig), ``features`` (its inputs), ``decoding`` (labels from part
probabilities), ``inference`` (the one run path training, evaluation and the engine share),
``baselines`` and ``metrics`` (the paper's), ``train``, ``evaluate`` and ``export`` (a verified
model file in the format ``models.format`` reads).
"""
