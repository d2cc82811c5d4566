"""End-to-end query latency per backend: ``ros-pgpt bench --json``.

For each backend/precision and visual-token count, ``--runs`` new frames
(held-out generator scenes, 640x480) are each asked two prompts:

- ``first_frame``: the first prompt on a new frame (letterbox, vision
  encoder, projector + image-prefix prefill, prompt prefill, decode,
  perception decode, postprocess);
- ``cached_frame``: a further prompt on the same frame at the same count
  (vision and the image-prefix KV cache reused).

Reported per stage (preprocess, vision, prefill, decode, perception,
postprocess, total): p50 and p90 in ms over the runs after ``--warmup``.
Every configuration runs in its own subprocess (``--worker``), so its peak
RSS (``ru_maxrss``) is its own. Ratios are p50 totals relative to
PyTorch fp32 from the same invocation. Masks are produced (``masks=True``)
unless ``--no-masks``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

STAGES = ("preprocess", "vision", "prefill", "decode", "perception", "postprocess", "total")
DEFAULT_CONFIGS = "pytorch:fp32,pytorch:int8,onnxruntime:fp32,onnxruntime:int8"
BASELINE = "pytorch:fp32"
SEED_BASE = 10**12 + 7_000_000  # held-out scenes (evaluate.EVAL_SEED_BASE range), apart from eval's


def _percentiles(values: list[float]) -> dict:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(array, 50)), 2), "p90": round(float(np.percentile(array, 90)), 2)}


def _summarize(records: list[dict]) -> dict:
    return {stage: _percentiles([r.get(stage, 0.0) for r in records]) for stage in STAGES}


def _rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # KiB on Linux


def run_worker(spec: dict) -> dict:
    """Benchmark one backend/precision in this process (see module docstring)."""
    import logging

    import numpy as np

    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.inference.backends import create_predictor

    logging.basicConfig(level=logging.WARNING)
    threads = spec.get("threads")
    started = time.perf_counter()
    predictor = create_predictor(spec.get("checkpoint"), backend=spec["backend"], precision=spec["precision"],
                                 engine_dir=spec.get("engine_dir"), threads=threads,
                                 export=spec.get("export", False))
    load_s = time.perf_counter() - started
    rss_loaded = _rss_mb()
    generator = SceneGenerator(resolutions=[(640, 480)],
                               query_kinds={"single": 0.6, "plural": 0.25, "absent": 0.15})
    counts = {}
    for count in spec["tokens"]:
        first, cached, found = [], [], []
        for run in range(spec["warmup"] + spec["runs"]):
            sample = generator.sample(SEED_BASE + run, n_queries=2)
            prompts = [q.prompt for q in sample.queries]
            if len(prompts) < 2:
                prompts = prompts * 2
            one = predictor.ground(sample.scene.image, prompts[0], visual_tokens=count, masks=spec["masks"],
                                   key=("bench", count, run))
            two = predictor.ground(None, prompts[1], visual_tokens=count, masks=spec["masks"])
            assert not one.frame_cached and two.frame_cached
            if run >= spec["warmup"]:
                first.append(one.timings)
                cached.append(two.timings)
                found += [len(one.objects), len(two.objects)]
        counts[str(predictor.tokens_for(count))] = {
            "first_frame": _summarize(first), "cached_frame": _summarize(cached),
            "objects_per_query": round(float(np.mean(found)), 2)}
    return {"backend": spec["backend"], "precision": spec["precision"], "engine": predictor.backend,
            "load_s": round(load_s, 2), "rss_after_load_mb": rss_loaded, "peak_rss_mb": _rss_mb(),
            "runs": spec["runs"], "warmup": spec["warmup"], "masks": spec["masks"], "tokens": counts}


def _spawn(spec: dict, timeout: float) -> dict:
    command = [sys.executable, "-m", "ros_pgpt.tools.bench", "--worker", json.dumps(spec)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"backend": spec["backend"], "precision": spec["precision"],
                "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(results: dict) -> dict:
    """p50 total of PyTorch fp32 divided by each configuration's, per count and query kind."""
    base = results.get(BASELINE)
    if not base or "tokens" not in base:
        return {}
    out = {}
    for name, result in results.items():
        if "tokens" not in result:
            continue
        per = {}
        for count, entry in result["tokens"].items():
            if count not in base["tokens"]:
                continue
            per[count] = {kind: round(base["tokens"][count][kind]["total"]["p50"] / entry[kind]["total"]["p50"], 2)
                          for kind in ("first_frame", "cached_frame")}
        out[name] = per
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ros-pgpt bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--engine-dir", default=None, help="export directory (default: <checkpoint>/export)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"comma-separated backend:precision (default: {DEFAULT_CONFIGS})")
    parser.add_argument("--tokens", default="16,36,64", help="visual-token counts (default: 16,36,64)")
    parser.add_argument("--runs", type=int, default=30, help="measured frames per count (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured frames per count first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--no-masks", action="store_true", help="ask for boxes only")
    parser.add_argument("--export", action="store_true", help="export the checkpoint first when needed")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="write the report as JSON (to FILE, or stdout)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    from ros_pgpt.checkpoints import default_checkpoint
    from ros_pgpt.export.artifacts import default_export_dir

    checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint else str(default_checkpoint())
    engine_dir = os.path.abspath(args.engine_dir) if args.engine_dir else str(default_export_dir(checkpoint))
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.export and any(c.split(":")[0] in ("onnxruntime", "tensorrt") for c in configs):
        from ros_pgpt.inference.backends import ensure_export

        ensure_export(checkpoint, engine_dir)  # once, before any timing
    tokens = [int(t) for t in args.tokens.split(",")]
    load_before = [round(v, 2) for v in os.getloadavg()]
    started = time.perf_counter()
    results = {}
    for config in configs:
        backend, _, precision = config.partition(":")
        spec = {"checkpoint": checkpoint, "engine_dir": engine_dir, "backend": backend,
                "precision": precision or None, "tokens": tokens, "runs": args.runs, "warmup": args.warmup,
                "threads": args.threads, "masks": not args.no_masks, "export": False}
        print(f"bench {config} ...", file=sys.stderr, flush=True)
        results[config] = _spawn(spec, args.timeout)
    report = {
        "checkpoint": checkpoint, "engine_dir": engine_dir,
        "machine": {"cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "gpu": _gpu_name()},
        "image": "640x480 generator scenes", "stages_ms": list(STAGES),
        "results": results, "speedup_vs_pytorch_fp32_p50": ratios(results),
        "wall_s": round(time.perf_counter() - started, 1),
        # 1/5/15-minute load averages: other work on the machine skews every figure above
        "loadavg_before": load_before, "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    else:
        if args.json:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")
        _print_table(report)
    return 0 if all("error" not in r for r in results.values()) else 1


def _gpu_name():
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def _print_table(report: dict) -> None:
    speed = report["speedup_vs_pytorch_fp32_p50"]
    print(f"{'config':<18} {'tokens':>6} {'first p50':>10} {'first p90':>10} {'cached p50':>11} "
          f"{'cached p90':>11} {'x first':>8} {'x cached':>9} {'peak RSS':>9}")
    for name, result in report["results"].items():
        if "error" in result:
            print(f"{name:<18} error: {result['error']}")
            continue
        for count, entry in result["tokens"].items():
            first, cached = entry["first_frame"]["total"], entry["cached_frame"]["total"]
            ratio = speed.get(name, {}).get(count, {})
            print(f"{name:<18} {count:>6} {first['p50']:>10.1f} {first['p90']:>10.1f} {cached['p50']:>11.1f} "
                  f"{cached['p90']:>11.1f} {ratio.get('first_frame', float('nan')):>8.2f} "
                  f"{ratio.get('cached_frame', float('nan')):>9.2f} {result['peak_rss_mb']:>8.0f}M")


if __name__ == "__main__":
    sys.exit(main())
