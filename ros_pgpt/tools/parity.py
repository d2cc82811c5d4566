"""Compare two predictors on held-out scenes (backend parity, quantization loss).

    report = compare_predictors(reference, candidate, samples=50, token_counts=[64])

Both run ``evaluate.evaluate_predictor`` on the same scenes and prompts; every
query's results are recorded and compared pairwise:
- ``same_objects``: fraction of prompts where the candidate finds the same
  number of objects and each box overlaps its reference box with IoU >= 0.5;
- ``box_rel_max``: largest box-coordinate difference relative to the image
  size, over prompts where both found the same number of objects;
- ``mask_iou_min``/``mask_iou_mean``: over matched objects;
- each side's evaluation metrics (acc50, miou, plural_f1, absent_acc) and the
  Acc@0.5 difference in points.
"""

from __future__ import annotations

import numpy as np

from ros_pgpt.data.geometry import box_iou, mask_iou


class RecordingPredictor:
    """Delegates to a predictor and keeps every ``ground`` result in order."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.results = []

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def set_image(self, image, key=None):
        self.image_shape = image.shape
        return self.predictor.set_image(image, key)

    def ground(self, *args, **kwargs):
        result = self.predictor.ground(*args, **kwargs)
        self.results.append((self.image_shape, result))
        return result


def compare_results(reference: list, candidate: list) -> dict:
    same, rel, ious = 0, 0.0, []
    for (shape, ref), (_, cand) in zip(reference, candidate):
        if len(ref.objects) != len(cand.objects):
            continue
        size = float(max(shape[0], shape[1]))
        matched = True
        for a, b in zip(ref.objects, cand.objects):
            matched &= box_iou(a.box, b.box) >= 0.5
            rel = max(rel, float(np.abs(np.subtract(a.box, b.box)).max()) / size)
            if a.mask is not None and b.mask is not None:
                ious.append(mask_iou(a.mask, b.mask))
        same += matched
    total = len(reference)
    return {"prompts": total, "same_objects": round(same / total, 4) if total else None,
            "box_rel_max": rel, "mask_iou_min": round(min(ious), 4) if ious else None,
            "mask_iou_mean": round(float(np.mean(ious)), 4) if ious else None}


def record(predictor, *, samples: int, token_counts: list[int], seed: int = 0) -> tuple[dict, list]:
    """(evaluate_predictor metrics, every (image shape, result) in order)."""
    from ros_pgpt.training.evaluate import evaluate_predictor

    recorder = RecordingPredictor(predictor)
    metrics = evaluate_predictor(recorder, samples=samples, token_counts=token_counts, seed=seed)
    return metrics, recorder.results


def compare_predictors(reference, candidate, *, samples: int, token_counts: list[int], seed: int = 0,
                       reference_record: tuple[dict, list] | None = None) -> dict:
    recorded, metrics = [], []
    for predictor, done in ((reference, reference_record), (candidate, None)):
        values, results = done or record(predictor, samples=samples, token_counts=token_counts, seed=seed)
        metrics.append(values)
        recorded.append(results)
    report = compare_results(*recorded)
    report["reference"], report["candidate"] = metrics
    report["acc50_drop_points"] = {
        count: round(100 * ((metrics[0][count]["acc50"] or 0) - (metrics[1][count]["acc50"] or 0)), 2)
        for count in metrics[0]}
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m ros_pgpt.tools.parity``: candidates vs PyTorch fp32 on held-out scenes, as JSON."""
    import argparse
    import json
    import time

    from ros_pgpt.inference.backends import create_predictor

    parser = argparse.ArgumentParser(prog="python -m ros_pgpt.tools.parity", description=main.__doc__)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--engine-dir", default=None)
    parser.add_argument("--candidates", default="onnxruntime:int8,pytorch:int8,onnxruntime:fp32")
    parser.add_argument("--samples", type=int, default=150, help="held-out scenes (4 prompts each)")
    parser.add_argument("--tokens", default="16,64")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    counts = [int(t) for t in args.tokens.split(",")]
    reference = create_predictor(args.checkpoint, backend="pytorch", precision="fp32")
    started = time.perf_counter()
    baseline = record(reference, samples=args.samples, token_counts=counts, seed=args.seed)
    out = {"reference_wall_s": round(time.perf_counter() - started, 1), "samples": args.samples, "tokens": counts, "seed": args.seed, "candidates": {}}
    for spec in args.candidates.split(","):
        backend, _, precision = spec.partition(":")
        started = time.perf_counter()
        candidate = create_predictor(args.checkpoint, backend=backend, precision=precision or None,
                                     engine_dir=args.engine_dir)
        report = compare_predictors(reference, candidate, samples=args.samples, token_counts=counts, seed=args.seed,
                                    reference_record=baseline)
        report["wall_s"] = round(time.perf_counter() - started, 1)
        out["candidates"][spec] = report
        print(json.dumps({spec: report}), flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
