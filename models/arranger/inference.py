"""Running an arranger (eager or TorchScript) on a note array: the one path training, evaluation
and the engine share."""
from __future__ import annotations

import numpy as np
import torch

from models.arranger.features import VOICE_FEATURES, FeatureConfig, entry_hints, note_features


def to_inputs(notes: np.ndarray, fcfg: FeatureConfig, n_parts: int,
              entries: np.ndarray | None = None, pitch_hints: np.ndarray | None = None,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
    """Model inputs with batch size 1, on `device`: (1, N, 5) int features, (1, N, P) entry hints,
    (1, P) pitch hints, and a zero (1, N, P*5) voice state (models that use it run through
    ``decode_stepwise``)."""
    ints = torch.from_numpy(note_features(notes, fcfg)).unsqueeze(0)
    eh = (entry_hints(notes, entries) if entries is not None
          else np.zeros((len(notes), n_parts), np.float32))
    ph = pitch_hints if pitch_hints is not None else np.zeros(n_parts, np.float32)
    inputs = (ints, torch.from_numpy(eh).unsqueeze(0),
              torch.from_numpy(np.asarray(ph, np.float32)).unsqueeze(0),
              torch.zeros(1, len(notes), n_parts * VOICE_FEATURES))
    return inputs if str(device) == "cpu" else tuple(x.to(device) for x in inputs)


@torch.no_grad()
def log_probs(module, notes: np.ndarray, fcfg: FeatureConfig, n_parts: int,
              entries: np.ndarray | None = None, pitch_hints: np.ndarray | None = None,
              device: str | torch.device = "cpu") -> np.ndarray:
    """(N, P) log-probabilities of each note's part; notes sorted by (onset, pitch, duration)."""
    if len(notes) == 0:
        return np.zeros((0, n_parts), np.float32)
    logits = module(*to_inputs(notes, fcfg, n_parts, entries, pitch_hints, device))
    return torch.log_softmax(logits[0].float(), -1).cpu().numpy()
