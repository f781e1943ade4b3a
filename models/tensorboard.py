"""TensorBoard for the training commands, when it is installed (it is optional)."""
from __future__ import annotations

import sys
from pathlib import Path


def tensorboard_writer(out: Path, enabled: bool = True):
    """A SummaryWriter logging to ``<out>/tb``; None when disabled (a non-zero DDP rank) or when
    tensorboard is not installed (said once on stderr)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed; no TensorBoard logs", file=sys.stderr)
        return None
    return SummaryWriter(str(Path(out) / "tb"))
