"""Stable ids for standing-prompt objects across frames.

Each standing prompt has its own tracks. On every standing run the objects a
prompt found are associated with that prompt's tracks by overlap: the mask
IoU where both have a mask, else the box IoU, against where the track is
predicted to be (its last box moved by its last step, so an object moving
steadily keeps overlapping). Pairs are taken greedily, best overlap first,
down to ``min_iou``. A matched object keeps the track's id; an unmatched one
starts a new track with a new id (counting up from 1, never reused). A track
not matched for more than ``memory`` runs is forgotten, so an object hidden
for a frame or two, or missed once by the model, gets its id back.

No motion model beyond that one step, no appearance features: the node runs
standing prompts at ``rate`` Hz, and an object that moves more than its own
size between two runs gets a new id.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros_pgpt.data.geometry import box_iou


@dataclass
class Observation:
    """One object of one run: box (x0, y0, x1, y1) in source pixels and optionally its mask.

    ``mask`` is a bool array placed at ``offset`` (x, y) in the source image (a
    crop, or the full frame at (0, 0)).
    """
    box: tuple
    mask: np.ndarray | None = None
    offset: tuple = (0, 0)


@dataclass
class Track:
    track_id: int
    last: Observation
    step: tuple = (0.0, 0.0)  # the box centre's motion between its last two matches, per run
    missed: int = 0  # runs since it was last matched

    def predicted(self) -> Observation:
        """Where the object should be on the next run: its last box and mask moved by its step."""
        runs = self.missed + 1
        dx, dy = self.step[0] * runs, self.step[1] * runs
        x0, y0, x1, y1 = self.last.box
        offset = (self.last.offset[0] + int(round(dx)), self.last.offset[1] + int(round(dy)))
        return Observation((x0 + dx, y0 + dy, x1 + dx, y1 + dy), self.last.mask, offset)


def placed_mask_iou(a: Observation, b: Observation) -> float:
    """IoU of two placed masks (each a crop with its offset)."""
    ax, ay = a.offset
    bx, by = b.offset
    ah, aw = a.mask.shape
    bh, bw = b.mask.shape
    x0, y0 = max(ax, bx), max(ay, by)
    x1, y1 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
    inter = 0
    if x1 > x0 and y1 > y0:
        inter = int(np.count_nonzero(a.mask[y0 - ay:y1 - ay, x0 - ax:x1 - ax] & b.mask[y0 - by:y1 - by, x0 - bx:x1 - bx]))
    union = int(np.count_nonzero(a.mask)) + int(np.count_nonzero(b.mask)) - inter
    return inter / union if union else 0.0


def _centre(box) -> tuple:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


class Tracker:
    """Per-prompt tracks; ``update(prompt, observations)`` returns one id per observation."""

    def __init__(self, min_iou: float = 0.3, memory: int = 3):
        self.min_iou = float(min_iou)
        self.memory = int(memory)
        self._tracks: dict[str, list[Track]] = {}
        self._next_id = 1

    def overlap(self, track: Track, obs: Observation) -> float:
        predicted = track.predicted()
        if predicted.mask is not None and obs.mask is not None:
            return placed_mask_iou(predicted, obs)
        return box_iou(predicted.box, obs.box)

    def update(self, prompt: str, observations: list[Observation]) -> list[int]:
        tracks = self._tracks.setdefault(prompt, [])
        pairs = sorted(((self.overlap(t, o), ti, oi) for ti, t in enumerate(tracks)
                        for oi, o in enumerate(observations)), reverse=True)
        ids = [0] * len(observations)
        matched = set()
        for iou, ti, oi in pairs:
            if iou < self.min_iou:
                break
            if ti in matched or ids[oi]:
                continue
            track, obs = tracks[ti], observations[oi]
            (px, py), (cx, cy) = _centre(track.last.box), _centre(obs.box)
            runs = track.missed + 1
            track.step = ((cx - px) / runs, (cy - py) / runs)
            track.last, track.missed = obs, 0
            matched.add(ti)
            ids[oi] = track.track_id
        for ti, track in enumerate(tracks):
            if ti not in matched:
                track.missed += 1
        tracks[:] = [t for t in tracks if t.missed <= self.memory]
        for oi, obs in enumerate(observations):
            if not ids[oi]:
                tracks.append(Track(self._next_id, obs))
                ids[oi] = self._next_id
                self._next_id += 1
        return ids

    def keep_only(self, prompts) -> None:
        """Forget the tracks of prompts that are no longer standing."""
        wanted = set(prompts)
        for prompt in [p for p in self._tracks if p not in wanted]:
            del self._tracks[prompt]
