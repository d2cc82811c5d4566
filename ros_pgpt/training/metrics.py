"""The held-out metrics: one ``Tally`` adds up grounding results against a scene's truth.

Shared by ``ros-pgpt eval`` (``evaluate.py``), its per-condition report
(``eval_conditions.py``) and ``ros-pgpt wording --check --eval``.
"""

from __future__ import annotations

import numpy as np

from ros_pgpt.data.geometry import box_iou, mask_iou, match_boxes

SINGLE_KINDS = ("single", "relation_box")


class Tally:
    """Single Acc@0.5 and mIoU, plural F1, absent and describe accuracy, latency, over added results."""

    def __init__(self) -> None:
        self.single = self.single_hits = 0
        self.ious: list[float] = []
        self.box_ious: list[float] = []
        self.tp = self.fp = self.fn = 0
        self.absent = self.absent_ok = 0
        self.describe = self.describe_ok = 0
        self.latency: list[float] = []

    def add(self, scene, query, result) -> None:
        boxes = [o.box for o in result.objects]
        self.latency.append(result.timings.get("total", 0.0))
        if query.kind in SINGLE_KINDS:
            target = scene.objects[query.targets[0]]
            self.single += 1
            self.box_ious.append(box_iou(boxes[0], target.box) if boxes else 0.0)
            self.single_hits += self.box_ious[-1] >= 0.5
            first = result.objects[0].mask if result.objects else None
            self.ious.append(mask_iou(first, target.mask) if first is not None else 0.0)
        elif query.kind == "plural":
            # true positives: targets matched one-to-one at IoU >= 0.5
            hits = sum(iou >= 0.5 for iou in match_boxes(boxes, [scene.objects[i].box for i in query.targets]))
            self.tp += hits
            self.fp += len(boxes) - hits
            self.fn += len(query.targets) - hits
        elif query.kind == "absent":
            self.absent += 1
            self.absent_ok += not result.objects
        elif query.kind == "describe":
            self.describe += 1
            self.describe_ok += result.answer.strip() == query.answer_text

    def summary(self) -> dict:
        f1_den = 2 * self.tp + self.fp + self.fn
        return {
            "acc50": ratio(self.single_hits, self.single),
            "box_miou": mean(self.box_ious),
            "miou": mean(self.ious),
            "plural_f1": round(2 * self.tp / f1_den, 4) if f1_den else None,
            "absent_acc": ratio(self.absent_ok, self.absent),
            "describe_acc": ratio(self.describe_ok, self.describe),
            "counts": {"single": self.single, "plural_targets": self.tp + self.fn, "absent": self.absent,
                       "describe": self.describe},
            "latency_ms_p50": round(float(np.median(self.latency)), 2) if self.latency else None,
        }


def mean(values: list[float]):
    return round(float(np.mean(values)), 4) if values else None


def ratio(hits: int, total: int):
    return round(hits / total, 4) if total else None


