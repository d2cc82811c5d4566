"""A short real training run, checkpoints, resume, DDP and eval (issue 3)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from ros_pgpt.model.build import WEIGHTS_FILE, checkpoint_metadata, load_model
from ros_pgpt.training.config import load_config
from ros_pgpt.data import SceneGenerator
from ros_pgpt.inference.predictor import Predictor
from ros_pgpt.training.loop import (
    build_optimizer,
    configure_trainable,
    lr_factor,
    new_model,
    scene_generator,
    step_items,
    train,
    train_step,
)

from conftest import TINY_CONFIG

PYTHON = sys.executable


def run_cli(*args, env=None, timeout=600):
    return subprocess.run([PYTHON, "-m", "ros_pgpt.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """30 steps of the tiny config (the same code path as the default checkpoint)."""
    out = tmp_path_factory.mktemp("tiny")
    model_config, train_config = load_config(TINY_CONFIG)
    result = train(model_config, train_config, out, progress=False)
    return out, result


def test_training_lowers_the_loss(trained):
    out, result = trained
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31))
    first = np.mean([r["lm"] for r in log[:5]])
    last = np.mean([r["lm"] for r in log[-5:]])
    assert last < 0.6 * first, (first, last)
    assert result["history"], "the final step evaluates"
    assert set(result["history"][-1]) >= {"acc50", "miou", "plural_f1", "absent_acc"}


def test_a_training_step_runs_with_denormals_flushed(denormals_kept):
    model_config, train_config = load_config(TINY_CONFIG)
    model = new_model(model_config, train_config)
    configure_trainable(model, train_config)
    train_step(model, build_optimizer(model, train_config), train_config, scene_generator(train_config), 0)
    assert denormals_kept()


def test_checkpoint_round_trip(trained):
    out, _ = trained
    assert (out / WEIGHTS_FILE).is_file() and (out / "config.yaml").is_file()
    metadata = checkpoint_metadata(out)
    assert metadata["step"] == 30 and metadata["train_wall_s"] > 0
    first, second = load_model(out), load_model(out)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    scene = SceneGenerator(resolutions=[(320, 240)]).sample(5).scene
    results = [Predictor(m).ground(scene.image, "the red star", masks=True) for m in (first, second)]
    assert [o.box for o in results[0].objects] == [o.box for o in results[1].objects]
    assert results[0].answer == results[1].answer


def test_resume_matches_an_uninterrupted_run(tmp_path, trained):
    out, _ = trained
    model_config, train_config = load_config(TINY_CONFIG)
    train(model_config, train_config, tmp_path, progress=False, stop_after=20)
    assert checkpoint_metadata(tmp_path)["step"] == 20
    train(model_config, train_config, tmp_path, resume=True, progress=False)
    resumed, straight = load_model(tmp_path).state_dict(), load_model(out).state_dict()
    worst = max(float((resumed[k] - straight[k]).abs().max()) for k in straight)
    assert worst < 1e-4


def test_missing_and_corrupt_checkpoint_files_are_named(tmp_path, trained):
    out, _ = trained
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")
    for name in ("config.yaml", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_model(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=WEIGHTS_FILE):
        load_model(tmp_path)


def test_eval_cli_reports_every_metric(trained):
    out, _ = trained
    done = run_cli("eval", "--checkpoint", str(out), "--samples", "3", "--tokens", "4,16", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report["results"]) == {"4", "16"}
    assert report["train_steps"] == 30
    for metrics in report["results"].values():
        assert set(metrics) >= {"acc50", "miou", "plural_f1", "absent_acc", "latency_ms_p50"}


def test_time_budget_ends_the_run_on_a_decayed_schedule(tmp_path):
    """``train.time_budget_s``: the run stops when the wall-clock budget is spent, long before its
    steps, evaluates and checkpoints that last step, and its learning rate has decayed by then."""
    model_config, train_config = load_config(TINY_CONFIG)
    train_config.steps, train_config.time_budget_s = 100_000, 6.0
    result = train(model_config, train_config, tmp_path, progress=False)
    steps = checkpoint_metadata(tmp_path)["step"]
    assert train_config.warmup_steps < steps == result["steps"] < 100_000
    assert result["history"][-1]["step"] == steps
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == steps and log[-1]["elapsed_s"] >= 6.0
    assert log[-1]["lr_factor"] < 0.2 < log[train_config.warmup_steps]["lr_factor"]
    # Progress is the larger share, of the steps or of the budget: half the budget is the cosine's middle.
    assert lr_factor(train_config, 1000, elapsed=3.0) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(train_config, 1000, elapsed=6.0) == pytest.approx(0.05)
    train_config.time_budget_s = 0.0
    assert lr_factor(train_config, 1000, elapsed=1e6) > 0.99


def test_ddp_two_cpu_processes(tmp_path):
    """torchrun with 2 processes on gloo trains and writes one checkpoint."""
    config = tmp_path / "ddp.yaml"
    config.write_text(TINY_CONFIG.read_text().replace("steps: 30", "steps: 6"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as probe:  # a free loopback port for the rendezvous (port 0 hangs torchrun)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={port}", "-m", "ros_pgpt.cli",
         "train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint_metadata(tmp_path / "run")["step"] == 6
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 6  # rank 0 alone writes the log


def test_train_bench_times_every_stage_of_real_steps(tmp_path, trained):
    """``ros-pgpt train-bench``: real training steps of a config, each stage timed; from a fresh
    model or a trained checkpoint, with denormals flushed (the trainer's way) or kept."""
    report_path = tmp_path / "train_bench.json"
    run = run_cli("train-bench", "--config", str(TINY_CONFIG), "--steps", "3", "--warmup", "1",
                  "--json", str(report_path))
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(report_path.read_text())
    median = report["median_ms"]
    stages = ("scenes", "collate", "encoder", "forward", "backward", "optimizer")
    assert all(median[stage] > 0 for stage in stages), median
    assert median["forward"] + median["backward"] < median["step"]
    assert report["config_steps"] == 30 and report["projected_run_s"] == round(median["step"] * 30 / 1000)
    assert report["checkpoint"] is None and report["flush_denormals"] is True
    bad = run_cli("train-bench", "--config", str(TINY_CONFIG), "--steps", "0")
    assert bad.returncode == 2 and "--steps" in bad.stderr
    budgeted = tmp_path / "budgeted.yaml"
    budgeted.write_text(TINY_CONFIG.read_text().replace("  steps: 30\n", "  steps: 30\n  time_budget_s: 0.5\n"))
    run = run_cli("train-bench", "--config", str(budgeted), "--steps", "2", "--warmup", "1",
                  "--checkpoint", str(trained[0]), "--keep-denormals")
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout[run.stdout.index("{"):])
    assert report["steps_in_budget"] == min(30, int(500 / report["median_ms"]["step"]))
    assert report["checkpoint"] == str(trained[0]) and report["flush_denormals"] is False


def test_init_from_a_checkpoint_trains_on_a_scene_mix(tmp_path, trained):
    """``train.init_from``: the run starts from that checkpoint (weights, tokenizer, model config; at
    learning rate 0 it ends where it began) and trains on every camera condition (distractors and
    unnamed sizes go through collate and the losses)."""
    out, _ = trained
    model_config, train_config = load_config(TINY_CONFIG)
    model_config.llm_hidden = 32  # what the file says is not used: the checkpoint's config is
    train_config.init_from, train_config.steps, train_config.lr, train_config.llm_lr = str(out), 3, 0.0, 0.0
    train_config.scene_mix = [{"weight": 1.0, "photo_backgrounds": 1.0, "camera_effects": 1.0, "occlusion": 0.5,
                               "truncation": 0.3, "distractors": 0.4, "whole_size_range": 1.0,
                               "min_objects": 6, "max_objects": 9}]
    generator = scene_generator(train_config)
    scenes = [scene for step in range(3) for scene, _ in step_items(generator, train_config, step, 0)]
    assert any(s.distractors for s in scenes) and any(o.size == "medium" for s in scenes for o in s.objects)
    result = train(model_config, train_config, tmp_path, progress=False)
    assert result["steps"] == 3
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log)
    start, end = load_model(out).state_dict(), load_model(tmp_path).state_dict()
    assert all(torch.equal(start[k], end[k]) for k in start)
    assert (tmp_path / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    bad = run_cli("train", "--config", str(TINY_CONFIG), "--out", str(tmp_path / "x"), "--init", str(tmp_path / "none"))
    assert bad.returncode == 2 and "no checkpoint to start from" in bad.stderr
