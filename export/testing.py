"""Checkpoints for the export/runtime/bench tests.

``test_checkpoint(tmp)`` gives the trained default checkpoint when it exists
($ROS_PGPT_CHECKPOINT or ros_pgpt/checkpoints/default), else an untrained
tiny one written to ``tmp`` (tests/data/tiny_model.yaml: the default model's
code paths, far fewer FLOPs). fp32 parity holds for untrained weights too;
accuracy checks (int8) need the trained one and skip without it.
"""

from __future__ import annotations

from pathlib import Path

# The tests' one tiny model (its model section; the source tree's, beside the tests that use it).
TINY_CONFIG = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny_model.yaml"


def tiny_model_config(**overrides):
    """The ModelConfig of TINY_CONFIG, ``overrides`` changed."""
    import yaml

    from ros_pgpt.model.config import model_config_from_dict

    if not TINY_CONFIG.is_file():
        raise FileNotFoundError(f"tiny test checkpoints need the source tree's {TINY_CONFIG}")
    return model_config_from_dict(yaml.safe_load(TINY_CONFIG.read_text())["model"] | overrides)


def trained_checkpoint() -> Path | None:
    from ros_pgpt.checkpoints import default_checkpoint

    directory = default_checkpoint()
    return directory if (directory / "model.safetensors").is_file() else None


def tiny_checkpoint(directory: Path, seed: int = 0, **overrides) -> Path:
    """An untrained tiny checkpoint (random heads, pretrained EfficientNet-Lite0); ``overrides`` change
    its model config."""
    import torch

    from ros_pgpt.model.build import build_model, save_checkpoint
    from ros_pgpt.data.corpus import text_corpus

    torch.manual_seed(seed)
    config = tiny_model_config(**overrides)
    model = build_model(config, tokenizer_texts=text_corpus(200, seed=seed))
    return save_checkpoint(model, Path(directory), config=config, metadata={"step": 0})


def test_checkpoint(tmp: Path) -> tuple[Path, bool]:
    """(checkpoint directory, trained?)."""
    trained = trained_checkpoint()
    if trained is not None:
        return trained, True
    tiny = Path(tmp) / "tiny"
    if (tiny / "model.safetensors").is_file():
        return tiny, False
    return tiny_checkpoint(tiny), False


test_checkpoint.__test__ = False  # not a pytest test


def shared_export(tmp_path_factory) -> tuple[Path, Path, bool]:
    """(checkpoint, export dir, trained?): exported once per test session, shared by the test modules.

    Lives under pytest's session base temp dir; a module that needs it calls
    this from a module-scoped fixture and gets the same export.
    """
    from ros_pgpt.export.artifacts import export_status

    from ros_pgpt.export.onnx_export import export_checkpoint

    base = Path(tmp_path_factory.getbasetemp()) / "ros_pgpt_shared_export"
    checkpoint, trained = test_checkpoint(base)
    out = base / "onnx"
    if not export_status(checkpoint, out)[0] or "llm_int4" not in _files(out):
        export_checkpoint(checkpoint, out, int4=True, tensorrt=())
    return checkpoint, out, trained


def _files(out: Path) -> dict:
    from ros_pgpt.export.artifacts import read_manifest

    return (read_manifest(out) or {}).get("files", {})
