"""``ros-pgpt bench --json``: report structure (not timings) on a tiny checkpoint (issue 4)."""

import json
import subprocess
import sys

import pytest

from ros_pgpt.tools.bench import STAGES, ratios

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from ros_pgpt.export.onnx_export import export_checkpoint
    from ros_pgpt.export.testing import tiny_checkpoint

    tmp = tmp_path_factory.mktemp("bench")
    checkpoint = tiny_checkpoint(tmp / "tiny")
    out = tmp / "onnx"
    export_checkpoint(checkpoint, out, counts=[4, 16], tensorrt=())
    proc = subprocess.run(
        [sys.executable, "-m", "ros_pgpt.cli", "bench", "--checkpoint", str(checkpoint), "--engine-dir", str(out),
         "--configs", "pytorch:fp32,onnxruntime:int8", "--tokens", "4,16", "--runs", "2", "--warmup", "1",
         "--json"], capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_every_config_reports_first_and_cached_frame_stages(report):
    assert set(report["results"]) == {"pytorch:fp32", "onnxruntime:int8"}
    for name, result in report["results"].items():
        assert "error" not in result, result
        assert result["peak_rss_mb"] > 0 and result["runs"] == 2
        assert set(result["tokens"]) == {"4", "16"}
        for entry in result["tokens"].values():
            for kind in ("first_frame", "cached_frame"):
                assert set(entry[kind]) == set(STAGES)
                for stage in STAGES:
                    assert entry[kind][stage]["p90"] >= entry[kind][stage]["p50"] >= 0
            # the cached-frame query skips the vision encoder
            assert entry["cached_frame"]["vision"]["p50"] < entry["first_frame"]["vision"]["p50"]
    assert report["results"]["onnxruntime:int8"]["engine"]["backend"] == "onnxruntime"


def test_ratios_are_relative_to_pytorch_fp32(report):
    speed = report["speedup_vs_pytorch_fp32_p50"]
    assert speed["pytorch:fp32"]["4"] == {"first_frame": 1.0, "cached_frame": 1.0}
    base = report["results"]["pytorch:fp32"]["tokens"]["16"]["first_frame"]["total"]["p50"]
    other = report["results"]["onnxruntime:int8"]["tokens"]["16"]["first_frame"]["total"]["p50"]
    assert speed["onnxruntime:int8"]["16"]["first_frame"] == pytest.approx(base / other, abs=0.01)
    assert ratios(report["results"]) == speed


def test_a_failing_config_is_reported_not_fatal(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ros_pgpt.cli", "bench", "--checkpoint", str(tmp_path / "none"),
                           "--configs", "pytorch:fp32", "--runs", "1", "--warmup", "0", "--tokens", "4", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)["results"]["pytorch:fp32"]
    assert "error" in result and "not found" in result["error"][0]
