"""Issue 6: the noise rule and `ros-pgpt ablate` end to end on the tiny config (the text-coordinate
baseline left the code: git tag ablation-variants)."""

import json
import subprocess
import sys

import yaml
import pytest

from ros_pgpt.tools.ablate import difference_error, fixed_counts, variants, verdict

from conftest import TINY_CONFIG


def test_verdict_needs_two_standard_errors():
    assert verdict(0.50, 0.40, se=0.04) == "held"
    assert verdict(0.50, 0.45, se=0.04) == "within noise"
    assert verdict(0.30, 0.45, se=0.04) == "reversed"
    # Pooled error: 0.021 vs 0.0 over 193 prompts is ~1 SE (one side at 0 still has noise).
    assert difference_error(0.021, 0.0, 193) == pytest.approx(0.0104, abs=1e-3)
    assert difference_error(0.0, 0.0, 193) == 0.0


def test_variants_share_everything_but_their_own_switch():
    table = variants(64)
    assert fixed_counts(64) == [4, 16, 64]
    assert table["perception_elastic"][1]["visual_token_choices"] == [4, 9, 16, 25, 36, 49, 64]
    assert table["c_abstractor_fixed16"] == ({}, {"visual_token_choices": [16]}, [16])
    assert table["resampler_fixed64"][0] == {"projector": "resampler", "projector_pool_heads": 0}
    assert table["pixel_votes_elastic"][0] == {"attribute_heads": True, "box_readout": "pixel_votes"}
    assert table["attribute_heads_elastic"][1:] == (table["perception_elastic"][1], [64])
    # At git tag ablation-variants:
    assert not {"decision_pointer_elastic", "match_head_elastic", "text_coordinates_elastic"} & set(table)
    with pytest.raises(ValueError, match="squares"):
        variants(50)


@pytest.mark.timeout(1200)
def test_ablate_writes_report_figures_and_raw_numbers(tmp_path):
    """The whole command on the tiny config, 3 steps per variant: every table, plot and number is written."""
    report, figures = tmp_path / "RESULTS.md", tmp_path / "results"
    base = tmp_path / "base.yaml"  # the tiny config with the papers' decoder, as configs/ablation.yaml
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["model"].update(attribute_heads=False, superlative_heads=False, match_head=False, box_readout="query",
                           pointer_prior=False)
    base.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "ros_pgpt.cli", "ablate", "--config", str(base), "--runs",
         str(tmp_path / "runs"), "--report", str(report), "--figures", str(figures), "--steps", "3",
         "--samples", "2", "--latency-samples", "2"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for heading in ("## 1. PerceptionGPT", "## 2. Matryoshka", "## 3. Honeybee", "## 4. Ours", "## Reproduce"):
        assert heading in text
    assert text.count("**Verdict") == 3 and "ablation-variants" in text
    for name in ("perception_tokens.png", "elastic_vs_fixed.png", "projectors.png", "decoder.png"):
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads((figures / "ablation.json").read_text())
    assert set(raw["variants"]) == set(variants(16))
    assert all(v["train"]["steps"] == 3 and v["train"]["seed"] == 0 for v in raw["variants"].values())
    assert raw["costs"]["perception_elastic"]["target_tokens_per_object"] == 1
    assert set(raw["costs"]) == {"perception_elastic"}
    # A rerun reuses finished runs; --fresh retrains every variant bit for bit (same seed, data, budget).
    logs = {name: (tmp_path / "runs" / name / "train_log.jsonl").read_text() for name in raw["variants"]}
    again = subprocess.run(done.args, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "[ablate] training" not in again.stdout, again.stderr[-3000:]
    fresh = subprocess.run(done.args + ["--fresh"], capture_output=True, text=True, timeout=900)
    assert fresh.returncode == 0 and "[ablate] training" in fresh.stdout, fresh.stderr[-3000:]
    for name, log in logs.items():
        before = [json.loads(line)["loss"] for line in log.splitlines()]
        after = [json.loads(line)["loss"] for line in
                 (tmp_path / "runs" / name / "train_log.jsonl").read_text().splitlines()]
        assert after == before, name
    only = subprocess.run(done.args + ["--only", "linear_fixed16"], capture_output=True, text=True, timeout=900)
    assert only.returncode == 0 and "[ablate] linear_fixed16:" in only.stdout, only.stderr[-3000:]
    assert "[ablate] perception_elastic" not in only.stdout
    # --merge puts an --only variant's fresh numbers into ablation.json and the report, and names its command.
    raw["variants"]["linear_fixed16"]["results"] = {}
    (figures / "ablation.json").write_text(json.dumps(raw))
    merged = subprocess.run(done.args + ["--only", "linear_fixed16", "--merge"], capture_output=True, text=True,
                            timeout=900)
    assert merged.returncode == 0, merged.stderr[-3000:]
    after = json.loads((figures / "ablation.json").read_text())
    assert after["variants"]["linear_fixed16"]["results"] and after["budget"]["merged"][0].endswith("--merge")
    assert "--only linear_fixed16 --merge" in report.read_text()
    # The report and plots can be rewritten from the raw numbers alone.
    report.unlink()
    redo = subprocess.run([sys.executable, "-m", "ros_pgpt.cli", "ablate", "--figures", str(figures), "--report",
                           str(report), "--from-json"], capture_output=True, text=True, timeout=300)
    assert redo.returncode == 0 and report.read_text().count("**Verdict") == 3, redo.stderr[-3000:]
