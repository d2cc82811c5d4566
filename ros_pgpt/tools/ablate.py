"""The three papers' claims at our scale: ``ros-pgpt ablate`` writes docs/RESULTS.md and its plots.

Every variant is the base config (``configs/ablation.yaml``) with a few keys
changed, trained by the same ``train`` function with the same seed, data
stream and step budget, then evaluated by ``ros-pgpt eval`` on the same
held-out scenes:

1. PerceptionGPT: perception tokens, elastic; Acc@0.5 against training
   steps, decoded tokens and decode latency per object. The Shikra-style
   text-coordinate baseline they were measured against (a row of
   docs/RESULTS.md) was removed from the code: git tag ablation-variants runs it.
2. Matryoshka: the elastic model (a random visual-token count per step) vs
   models trained at one fixed count; accuracy and latency against the count.
3. Honeybee: C-Abstractor vs linear vs resampler at the same fixed count.
4. Ours: the dense training signals of our decoder (attribute heads, then
   pixel box votes) on top of the PerceptionGPT decoder. The decision pointer
   and the match head without a pointer prior, two rows of docs/RESULTS.md,
   were removed from the code: git tag ablation-variants runs them.

Runs live in ``--runs`` (one checkpoint directory per variant); a finished run
is reused and an interrupted one resumed, so a rerun of the command only
redoes what is missing (``--fresh`` retrains everything).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ros_pgpt.training.config import load_config
from ros_pgpt.training.loop import TRAIN_META_FILE

DEFAULT_RUNS = "ablation_runs"
DEFAULT_REPORT = "docs/RESULTS.md"
DEFAULT_FIGURES = "docs/results"


def variants(max_tokens: int) -> dict[str, tuple[dict, dict, list[int]]]:
    """name -> (model overrides, train overrides, visual-token counts to evaluate), for maximum M.

    Elastic models draw every square count up to M; fixed-count models train
    at 4, M/4 and M; projectors compare at M.
    """
    elastic = [n * n for n in range(2, math.isqrt(max_tokens) + 1)]
    if max_tokens not in elastic or max_tokens // 4 not in elastic:
        raise ValueError(f"max_visual_tokens {max_tokens}: the ablation needs M and M/4 to be squares (e.g. 16, 64)")
    per_count = {"visual_token_choices": elastic}
    table = {
        "perception_elastic": ({}, per_count, elastic),
    }
    for count in fixed_counts(max_tokens):
        table[f"c_abstractor_fixed{count}"] = ({}, {"visual_token_choices": [count]}, [count])
    for projector in ("linear", "resampler"):
        # The baselines pool by averaging: learned pooling weights are the C-Abstractor's.
        table[f"{projector}_fixed{max_tokens}"] = ({"projector": projector, "projector_pool_heads": 0},
                                                   {"visual_token_choices": [max_tokens]}, [max_tokens])
    for name, model_over in DECODER_STEPS[1:]:
        table[name] = (model_over, per_count, [max_tokens])
    return table


# The decoder claim, step by step: (variant, model overrides); the first is the papers' decoder.
DECODER_STEPS = (
    ("perception_elastic", {}),
    ("attribute_heads_elastic", {"attribute_heads": True}),
    ("pixel_votes_elastic", {"attribute_heads": True, "box_readout": "pixel_votes"}),
)
DECODER_LABELS = ("PerceptionGPT decoder (query box head)", "+ attribute heads", "+ pixel box votes")


# Where the match head refuses a first object in the ablation: the balanced point of its training loss
# (the shipped default is lower, docs/MODEL.md); it changes nothing for variants without the head.
MATCH_THRESHOLD = 0.5


def fixed_counts(max_tokens: int) -> list[int]:
    """Counts that get their own fixed-count model: 4, M/4 and M (4, 16, 64 for M = 64)."""
    return sorted({min(4, max_tokens), max_tokens // 4, max_tokens})


# -- running ---------------------------------------------------------------
def variant_configs(base: Path, name: str, steps: int | None):
    """(model config, train config, visual-token counts to evaluate) of one variant."""
    model_config, train_config = load_config(base)
    if (model_config.attribute_heads or model_config.superlative_heads
            or model_config.match_head or model_config.box_readout != "query"):
        raise ValueError(f"{base}: the ablation starts from the PerceptionGPT decoder (attribute_heads: false, "
                         "superlative_heads: false, match_head: false, box_readout: "
                         "query); claim 4 adds ours")
    model_over, train_over, counts = variants(model_config.max_visual_tokens)[name]
    train_config = replace(train_config, **train_over)
    if steps:
        train_config.steps = steps
    return replace(model_config, **model_over), train_config, counts


def finished(run: Path, steps: int) -> bool:
    meta = run / TRAIN_META_FILE
    return meta.is_file() and json.loads(meta.read_text())["step"] >= steps


def run_variant(base: Path, name: str, runs: Path, *, steps: int | None, samples: int, fresh: bool) -> dict:
    """Train (or reuse) one variant, then evaluate it with ``ros-pgpt eval``; returns its record."""
    import shutil

    from ros_pgpt.training import evaluate
    from ros_pgpt.training.loop import train

    model_config, train_config, counts = variant_configs(base, name, steps)
    run = runs / name
    if fresh and run.exists():
        shutil.rmtree(run)
    if not finished(run, train_config.steps):
        if run.exists() and not (run / TRAIN_META_FILE).is_file():
            shutil.rmtree(run)  # a run killed before its first checkpoint
        print(f"[ablate] training {name}: {train_config.steps} steps", flush=True)
        train(model_config, train_config, run, resume=True, progress=False)
    report = run / "eval_report.json"
    evaluate.main(["--checkpoint", str(run), "--samples", str(samples), "--match-threshold", str(MATCH_THRESHOLD),
                   "--tokens", ",".join(map(str, counts)), "--json", str(report)])
    record = json.loads(report.read_text())
    record["history"] = [json.loads(line) for line in (run / "eval_history.jsonl").read_text().splitlines()]
    record["model"], record["train"] = model_config.to_dict(), train_config.to_dict()
    return record


def decode_cost(predictor, *, samples: int, seed: int = 0) -> dict:
    """Per object on held-out single-object prompts: decoded tokens and decode latency (ms).

    ``target_tokens_per_object``: tokens of the training answer per object
    (independent of how well the model learned); ``decoded_*``: what greedy
    decoding produced, over answers with at least one object.
    """
    from ros_pgpt.training.batching import answer_ids
    from ros_pgpt.training.evaluate import held_out_samples
    from ros_pgpt.training.metrics import SINGLE_KINDS

    model = predictor.model
    target, decoded, latency = [], [], []
    for index, sample in held_out_samples(samples, seed=seed):
        predictor.set_image(sample.scene.image, key=index)
        for query in sample.queries:
            if query.kind not in SINGLE_KINDS:
                continue
            target.append(len(answer_ids(model.language_model.tokenizer, model.ids, query)) - 1)  # without <eos>
            result = predictor.ground(None, query.prompt, masks=False, boxes=query.input_boxes)
            if result.objects:
                count = len(result.objects)
                decoded.append((result.answer_tokens - 1) / count)
                latency.append((result.timings.get("decode", 0.0) + result.timings.get("perception", 0.0)) / count)
    return {"target_tokens_per_object": _median(target), "decoded_tokens_per_object": _median(decoded),
            "decode_ms_per_object_p50": _median(latency), "answers_with_objects": len(decoded),
            "single_prompts": len(target)}


def frame_latency(predictor, counts: list[int], *, samples: int) -> dict:
    """p50 ms per visual-token count of a prompt on a new frame: ``total`` and ``prefill``
    (image prefix + prompt through the LLM, the part the token count scales)."""
    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.training.evaluate import EVAL_SEED_BASE

    generator = SceneGenerator(resolutions=[(640, 480)])
    timings: dict[int, list[dict]] = {count: [] for count in counts}
    for index in range(samples + 1):  # the first frame warms up and is dropped
        sample = generator.sample(EVAL_SEED_BASE + 50_000 + index, n_queries=1)
        for count in counts:
            result = predictor.ground(sample.scene.image, sample.queries[0].prompt, visual_tokens=count,
                                      boxes=sample.queries[0].input_boxes)
            if index:
                timings[count].append(result.timings)
    return {str(count): {stage: _median([t.get(stage, 0.0) for t in rows]) for stage in ("prefill", "total")}
            for count, rows in timings.items()}


def _median(values) -> float | None:
    return round(float(np.median(values)), 2) if values else None


# -- reporting -------------------------------------------------------------
def difference_error(a: float, b: float, n: int) -> float:
    """Standard error of the difference of two scores in [0, 1], each a mean over the same n prompts.

    Pooled, as in the two-proportion z-test: sqrt(2 p(1-p)/n) with p the mean
    of the two. Exact for accuracies; for mean IoUs p(1-p) bounds the variance.
    It covers the held-out sample only, not seed-to-seed training variance.
    """
    pooled = (a + b) / 2
    return math.sqrt(2 * pooled * (1 - pooled) / max(n, 1))


def verdict(better: float, worse: float, se: float) -> str:
    """Whether ``better`` beat ``worse`` beyond two combined standard errors."""
    gap = better - worse
    if gap > 2 * se:
        return "held"
    if gap < -2 * se:
        return "reversed"
    return "within noise"


def metrics(record: dict, count: int) -> dict:
    return record["results"][str(count)]


def latency(record: dict, count: int, stage: str = "total") -> float:
    """New-frame p50 ms at ``count`` (see ``frame_latency``)."""
    return record["frame_latency"][str(count)][stage]


def plot_all(records: dict, costs: dict, figures: Path, max_tokens: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(figures / name, dpi=110)
        plt.close(fig)
        written.append(name)

    # 1. perception tokens (the text-coordinate baseline: git tag ablation-variants)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    history = records["perception_elastic"]["history"]
    line, = left.plot([h["step"] for h in history], [h["acc50"] for h in history], marker="o",
                      label="perception tokens: Acc@0.5")
    left.plot([h["step"] for h in history], [h["box_miou"] for h in history], "--", marker="s",
              color=line.get_color(), label="perception tokens: box mIoU")
    left.set(xlabel="training step", ylabel="held-out, M tokens", title="Localization during training")
    left.legend()
    names = ["perception tokens"]
    keys = ("perception_elastic",)
    x = np.arange(1)
    tokens = right.bar(x - 0.2, [costs[k]["target_tokens_per_object"] or 0 for k in keys], 0.4,
                       label="tokens / object")
    twin = right.twinx()
    decode = twin.bar(x + 0.2, [costs[k]["decode_ms_per_object_p50"] or 0 for k in keys], 0.4, color="tab:orange",
                      label="decode ms / object (p50)")
    right.set_xticks(x, names)
    right.set_ylabel("answer tokens per object")
    twin.set_ylabel("decode ms per object (p50)")
    right.set_title("Decoding cost per object")
    right.legend(handles=[tokens, decode], loc="upper left", fontsize=8)
    save(fig, "perception_tokens.png")

    # 2. elastic vs fixed counts
    elastic_counts, fixed_at = variants(max_tokens)["perception_elastic"][2], fixed_counts(max_tokens)
    elastic = records["perception_elastic"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    fixed = [records[f"c_abstractor_fixed{n}"] for n in fixed_at]
    for key, style, marker in (("acc50", "-o", "o"), ("box_miou", "--s", "s")):
        left.plot(elastic_counts, [metrics(elastic, n)[key] for n in elastic_counts], style,
                  label=f"elastic (one model): {key}")
        left.scatter(fixed_at, [metrics(r, n)[key] for r, n in zip(fixed, fixed_at)], color="tab:red",
                     marker=marker, zorder=3, label=f"fixed count (one model each): {key}")
    left.set(xlabel="visual tokens", ylabel="held-out score", title="Localization against visual-token count")
    left.legend()
    for stage, style in (("total", "-o"), ("prefill", "--s")):
        right.plot(elastic_counts, [latency(elastic, n, stage) for n in elastic_counts], style,
                   label=f"elastic: {stage}")
        right.scatter(fixed_at, [latency(r, n, stage) for r, n in zip(fixed, fixed_at)], color="tab:red",
                      zorder=3, label=f"fixed: {stage}")
    right.set(xlabel="visual tokens", ylabel="new-frame query p50 (ms)", title="Latency against visual-token count")
    right.legend()
    save(fig, "elastic_vs_fixed.png")

    # 3. projectors
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    projectors = ("c_abstractor", "linear", "resampler")
    chosen = [records[f"{p}_fixed{max_tokens}"] for p in projectors]
    values = {"Acc@0.5": [metrics(r, max_tokens)["acc50"] for r in chosen],
              "box mIoU": [metrics(r, max_tokens)["box_miou"] for r in chosen],
              "mask mIoU": [metrics(r, max_tokens)["miou"] for r in chosen],
              "new-frame query p50 (ms)": [latency(r, max_tokens) for r in chosen]}
    for axis, (title, column) in zip(axes, values.items()):
        axis.bar(projectors, [v or 0 for v in column], color=["tab:blue", "tab:gray", "tab:green"])
        axis.set_title(f"{title} at {max_tokens} tokens")
        axis.tick_params(axis="x", labelsize=8)
    save(fig, "projectors.png")

    # 4. our decoder's dense training signals
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (name, _), label in zip(DECODER_STEPS, DECODER_LABELS):
        history = records[name]["history"]
        for axis, key in zip(axes, ("acc50", "box_miou")):
            axis.plot([h["step"] for h in history], [h[key] for h in history], marker="o", label=label)
    for axis, title in zip(axes, ("Acc@0.5", "box mIoU")):
        axis.set(xlabel="training step", ylabel=f"held-out {title}, M tokens", title=f"{title} during training")
        axis.legend(fontsize=8)
    save(fig, "decoder.png")
    return written


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(records: dict, costs: dict, figures: list[str], path: Path, *, budget: dict, figures_dir: Path,
                 reading: Path | None = None) -> None:
    """The markdown report; ``reading`` (hand-written interpretation) is embedded before the commands."""
    rel = Path(figures_dir).relative_to(path.parent) if Path(figures_dir).is_relative_to(path.parent) else figures_dir
    max_tokens = budget["max_tokens"]
    table = variants(max_tokens)
    elastic_counts, fixed_at = table["perception_elastic"][2], fixed_counts(max_tokens)
    perception = records["perception_elastic"]
    p_m = metrics(perception, max_tokens)
    n_single = p_m["counts"]["single"]

    def compare(better: dict, worse: dict) -> str:
        """Acc@0.5 and box mIoU differences with their noise and verdicts."""
        parts = []
        for key, label in (("acc50", "Acc@0.5"), ("box_miou", "box mIoU")):
            se = difference_error(better[key], worse[key], n_single)
            parts.append(f"{label} {verdict(better[key], worse[key], se)} "
                         f"({better[key] - worse[key]:+.3f}, 2 SE {2 * se:.3f})")
        return "; ".join(parts)

    elastic_rows, claim2 = [], []
    for n in fixed_at:
        fixed = records[f"c_abstractor_fixed{n}"]
        e, f = metrics(perception, n), metrics(fixed, n)
        elastic_rows.append([n, _fmt(e["acc50"]), _fmt(f["acc50"]), _fmt(e["box_miou"]), _fmt(f["box_miou"]),
                             _fmt(e["miou"]), _fmt(f["miou"]), _fmt(latency(perception, n), 1),
                             _fmt(latency(fixed, n), 1)])
        claim2.append(f"at {n} tokens, elastic vs fixed: {compare(e, f)}")
    prefill = [latency(perception, n, "prefill") for n in elastic_counts]
    latency_falls = prefill[0] < 0.9 * prefill[-1]  # by more than timer noise

    projector_rows = []
    for name in ("c_abstractor", "linear", "resampler"):
        record = records[f"{name}_fixed{max_tokens}"]
        m = metrics(record, max_tokens)
        params = record.get("projector_params")
        projector_rows.append([name, _fmt(m["acc50"]), _fmt(m["box_miou"]), _fmt(m["miou"]), _fmt(m["plural_f1"]),
                               _fmt(latency(record, max_tokens), 1), _fmt(latency(record, max_tokens, "prefill"), 1),
                               f"{params / 1e6:.2f} M" if params else "n/a"])
    c_abs = metrics(records[f"c_abstractor_fixed{max_tokens}"], max_tokens)
    claim3 = {other: compare(c_abs, metrics(records[f"{other}_fixed{max_tokens}"], max_tokens))
              for other in ("linear", "resampler")}

    baseline = metrics(records[DECODER_STEPS[0][0]], max_tokens)
    decoder_rows, claim4 = [], []
    for (name, _), label in zip(DECODER_STEPS, DECODER_LABELS):
        m = metrics(records[name], max_tokens)
        decoder_rows.append([label, _fmt(m["acc50"]), _fmt(m["box_miou"]), _fmt(m["miou"]), _fmt(m["plural_f1"]),
                             _fmt(m["absent_acc"]), _fmt(records[name]["train_wall_s"], 0)])
        if name != DECODER_STEPS[0][0]:
            claim4.append(f"{label} vs the PerceptionGPT decoder: {compare(m, baseline)}")

    steps = budget["steps"]
    history_rows = [[h["step"], _fmt(h["acc50"]), _fmt(h.get("box_miou"))] for h in perception["history"]]
    c_p = costs["perception_elastic"]
    all_rows = [[name, _fmt(records[name]["train_wall_s"], 0), ", ".join(map(str, table[name][2]))]
                for name in table]
    command = budget["command"]
    lines = [
        "# Results: the three papers' claims and ours, at our scale",
        "",
        f"Generated by `{command}`" + "".join(f", then `{m}`" for m in budget.get("merged", ()))
        + f" on {budget['machine']} ({budget['date']}); do not edit by hand.",
        "",
        "## Setup (the same for every variant)",
        "",
        f"- Base config `{budget['config']}`: the default model (EfficientNet-Lite0 frozen, scratch Llama "
        f"{budget['llm']}, decoder {budget['decoder']}), seed {budget['seed']}, "
        f"**{steps} steps** of {budget['scenes']} scenes x {budget['queries']} queries "
        f"(= {steps * budget['scenes'] * budget['queries']:,} training prompts), lr {budget['lr']}, "
        f"the same generated data stream for every variant.",
        f"- Held-out evaluation: `ros-pgpt eval --samples {budget['samples']}` (scenes from the eval seed range, "
        f"{n_single} single-object prompts); training-curve points: {budget['eval_samples']} scenes every "
        f"{budget['eval_every']} steps.",
        "- Budget: the default checkpoint (`configs/default.yaml`) trains several times longer, so absolute "
        "numbers are low and only the side-by-side differences are the point.",
        "- Noise: a difference is called *held* when it exceeds two standard errors of the difference (2 SE: "
        "pooled two-proportion error for Acc@0.5, the same bound for box mIoU in [0, 1]), *reversed* when it "
        "is that large the other way, else *within noise*. The SE covers the held-out sample only: every "
        "variant is one training run with one seed, so seed-to-seed variance is not in it. Box mIoU (mean "
        "IoU of the first box, 0 when none) is the continuous companion of Acc@0.5: it still moves while "
        "Acc@0.5 is near 0.",
        f"- Latency: a prompt on a new frame, p50 over {budget['latency_samples']} frames per count on this CPU "
        "(PyTorch fp32): `total` (letterbox, vision encoder, projector, LLM, perception heads) and `prefill` "
        "(the image prefix and the prompt through the LLM: the part the visual-token count scales); every "
        "number in one run of this command.",
        "",
        _table(["variant", "train wall s", "evaluated at"], all_rows),
        "",
        "## 1. PerceptionGPT: perception tokens",
        "",
        "One `<obj>` token per object, decoded into a box and a mask by the perception heads. The "
        "Shikra-style text-coordinate baseline (boxes spelled as \"[x0,y0,x1,y1]\", no masks) of earlier runs "
        "left the code with its option: `git checkout ablation-variants` runs it against this row.",
        "",
        f"![perception tokens]({rel}/perception_tokens.png)",
        "",
        _table(["answer format", f"Acc@0.5 @{max_tokens}", "box mIoU", "mask mIoU", "plural F1", "absent acc",
                "tokens / object (target)", "tokens / object (decoded)", "decode ms / object p50"],
               [["perception tokens", _fmt(p_m["acc50"]), _fmt(p_m["box_miou"]), _fmt(p_m["miou"]),
                 _fmt(p_m["plural_f1"]),
                 _fmt(p_m["absent_acc"]), _fmt(c_p["target_tokens_per_object"], 1),
                 _fmt(c_p["decoded_tokens_per_object"], 1), _fmt(c_p["decode_ms_per_object_p50"], 2)]]),
        "",
        "Against training steps (held-out, training-time eval at M tokens):",
        "",
        _table(["step", "Acc@0.5", "box mIoU"], history_rows),
        "",
        "## 2. Matryoshka: one elastic model vs one model per visual-token count",
        "",
        f"![elastic vs fixed]({rel}/elastic_vs_fixed.png)",
        "",
        _table(["tokens", "elastic Acc@0.5", "fixed Acc@0.5", "elastic box mIoU", "fixed box mIoU",
                "elastic mask mIoU", "fixed mask mIoU", "elastic new-frame ms", "fixed new-frame ms"], elastic_rows),
        "",
        "Elastic model at every count (Acc@0.5 / LLM prefill p50): " + ", ".join(
            f"{n}: {_fmt(metrics(perception, n)['acc50'])} / {_fmt(latency(perception, n, 'prefill'), 1)} ms"
            for n in elastic_counts) + ".",
        "",
        "**Verdict: " + "; ".join(claim2) + f". Latency {'falls' if latency_falls else 'does not fall'} "
        "with the count "
        f"(LLM prefill p50 {_fmt(prefill[-1], 1)} ms at {elastic_counts[-1]} -> {_fmt(prefill[0], 1)} ms at "
        f"{elastic_counts[0]}; new-frame total {_fmt(latency(perception, elastic_counts[-1]), 1)} -> "
        f"{_fmt(latency(perception, elastic_counts[0]), 1)} ms).**",
        "",
        f"## 3. Honeybee: projectors at {max_tokens} visual tokens",
        "",
        f"![projectors]({rel}/projectors.png)",
        "",
        _table(["projector", "Acc@0.5", "box mIoU", "mask mIoU", "plural F1", "new-frame ms p50", "prefill ms p50",
                "projector parameters"], projector_rows),
        "",
        "**Verdict, C-Abstractor vs linear: " + claim3["linear"] + ". C-Abstractor vs resampler: "
        + claim3["resampler"] + ".**",
        "",
        "## 4. Ours: dense training signals for the perception decoder",
        "",
        "Not a paper's claim but this project's: training-only attribute heads (colour / shape / size of the "
        "target on the perception token, of each grid cell's object on the visual tokens, of each pixel's "
        "object on the decoder memory), then boxes read as the mask-weighted average of per-pixel box votes "
        "instead of an MLP on the query (docs/MODEL.md). Each row adds one step. Two later steps of earlier "
        "runs, a decision pointer and a match head that ranks its candidates without the pointer prior, "
        "left the code with their options: `git checkout ablation-variants` runs them.",
        "",
        f"![decoder]({rel}/decoder.png)",
        "",
        _table(["decoder", f"Acc@0.5 @{max_tokens}", "box mIoU", "mask mIoU", "plural F1", "absent acc",
                "train wall s"], decoder_rows),
        "",
        "**Verdict: " + "; ".join(claim4) + ".**",
        "",
    ]
    if reading is not None and reading.is_file():
        lines += [reading.read_text().strip(), ""]
    lines += ["## Reproduce", "", "```", command, *budget.get("merged", ()), "```", "",
              f"Figures: {', '.join(f'`{rel}/{f}`' for f in figures)}; raw numbers: `{rel}/ablation.json`.", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ros-pgpt ablate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/ablation.yaml", help="base config every variant starts from")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="directory of the variants' checkpoints")
    parser.add_argument("--report", default=DEFAULT_REPORT, help="markdown report to write")
    parser.add_argument("--figures", default=DEFAULT_FIGURES, help="directory for PNGs and ablation.json")
    parser.add_argument("--reading", default="docs/results_reading.md",
                        help="hand-written interpretation embedded in the report (skipped when absent)")
    parser.add_argument("--steps", type=int, help="override the training steps of every variant")
    parser.add_argument("--samples", type=int, default=100, help="held-out scenes for the final eval")
    parser.add_argument("--latency-samples", type=int, default=20, help="new frames per count for latency")
    parser.add_argument("--fresh", action="store_true", help="retrain every variant")
    parser.add_argument("--only", nargs="+", metavar="VARIANT",
                        help="train and evaluate just these variants and print their numbers (no report): "
                             "to check a rerun against the report's ablation.json")
    parser.add_argument("--merge", action="store_true",
                        help="with --only: put these variants' numbers into FIGURES/ablation.json and rewrite the "
                             "report and plots (for a variant added after the full run)")
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite the report and plots from FIGURES/ablation.json without training or evaluating")
    args = parser.parse_args(argv)
    import torch

    from ros_pgpt.inference.predictor import Predictor

    if args.from_json:
        raw = json.loads((Path(args.figures) / "ablation.json").read_text())
        write_outputs(raw["variants"], raw["costs"], raw["budget"], Path(args.figures), Path(args.report),
                      Path(args.reading))
        return 0

    base, runs, figures = Path(args.config), Path(args.runs), Path(args.figures)
    model_config, train_config = load_config(base)
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    table = variants(model_config.max_visual_tokens)
    unknown = sorted(set(args.only or ()) - set(table))
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {sorted(table)}")
    records, costs = {}, {}
    for name in args.only or table:
        started = time.perf_counter()
        record = run_variant(base, name, runs, steps=args.steps, samples=args.samples, fresh=args.fresh)
        predictor = Predictor.from_checkpoint(runs / name)
        record["frame_latency"] = frame_latency(predictor, table[name][2], samples=args.latency_samples)
        record["projector_params"] = sum(p.numel() for p in predictor.model.projector.parameters())
        if name == "perception_elastic" and not args.only:
            costs[name] = decode_cost(predictor, samples=args.samples // 2)
        records[name] = record
        print(f"[ablate] {name}: {json.dumps(record['results'])} ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.only and args.merge:
        merge_into(figures, records, "ros-pgpt ablate" + "".join(f" {a}" for a in (argv or [])))
        raw = json.loads((figures / "ablation.json").read_text())
        write_outputs(raw["variants"], raw["costs"], raw["budget"], figures, Path(args.report), Path(args.reading))
    if args.only:
        return 0
    budget = {"steps": args.steps or train_config.steps, "scenes": train_config.scenes_per_step,
              "queries": train_config.queries_per_scene, "lr": train_config.lr, "seed": train_config.seed,
              "samples": args.samples, "latency_samples": args.latency_samples,
              "eval_samples": train_config.eval_samples, "eval_every": train_config.eval_every,
              "config": str(base), "max_tokens": model_config.max_visual_tokens,
              "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
              "date": time.strftime("%Y-%m-%d"), "llm": f"{model_config.llm_layers}L/{model_config.llm_hidden}d",
              "decoder": f"{model_config.decoder_dim}/{model_config.decoder_layers} layers"}
    budget["command"] = "ros-pgpt ablate" + "".join(f" {a}" for a in (argv or []))
    write_outputs(records, costs, budget, figures, Path(args.report), Path(args.reading))
    return 0


def merge_into(figures: Path, records: dict, command: str) -> None:
    """Replace or add ``records`` in FIGURES/ablation.json; the command is listed beside the full run's."""
    path = figures / "ablation.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run the full ablation once before merging variants into it")
    raw = json.loads(path.read_text())
    raw["variants"].update({name: {key: record[key] for key in KEPT} for name, record in records.items()})
    merged = raw["budget"].setdefault("merged", [])
    if command not in merged:
        merged.append(command)
    path.write_text(json.dumps(raw, indent=1))


KEPT = ("results", "history", "train_wall_s", "projector_params", "frame_latency", "model", "train")


def write_outputs(records: dict, costs: dict, budget: dict, figures: Path, report: Path, reading: Path) -> None:
    """Plots, ablation.json and the markdown report from the collected numbers."""
    figures.mkdir(parents=True, exist_ok=True)
    written = plot_all(records, costs, figures, budget["max_tokens"])
    (figures / "ablation.json").write_text(json.dumps(
        {"budget": budget, "costs": costs,
         "variants": {name: {key: record[key] for key in KEPT} for name, record in records.items()}}, indent=1))
    write_report(records, costs, written, report, budget=budget, figures_dir=figures, reading=reading)
    print(f"[ablate] wrote {report} and {len(written)} figures in {figures}")
