"""Shipped checkpoints: ``default/`` is trained by ``configs/default.yaml`` (see docs/MODEL.md)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).parent / "default"


def default_checkpoint() -> Path:
    """The checkpoint used when none is named: $ROS_PGPT_CHECKPOINT, else the shipped one."""
    return Path(os.environ.get("ROS_PGPT_CHECKPOINT", DEFAULT_CHECKPOINT))
