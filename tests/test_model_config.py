"""ModelConfig's defaults are the shipped model; the config files list only their differences."""
import dataclasses
from pathlib import Path

import yaml

from ros_pgpt.model.build import read_model_config
from ros_pgpt.model.config import ModelConfig
from ros_pgpt.training.config import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "ros_pgpt" / "checkpoints" / "default"


def test_defaults_are_the_shipped_model():
    assert read_model_config(SHIPPED) == ModelConfig()


def test_default_training_config_gives_the_shipped_model():
    data = yaml.safe_load((REPO_ROOT / "configs" / "default.yaml").read_text())
    assert "model" not in data, "configs/default.yaml lists training choices only"
    assert load_config(REPO_ROOT / "configs" / "default.yaml")[0] == ModelConfig()


def test_config_files_list_only_differences():
    defaults = dataclasses.asdict(ModelConfig())
    for path in [*(REPO_ROOT / "configs").glob("*.yaml"), REPO_ROOT / "tests" / "data" / "tiny_model.yaml"]:
        model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        same = sorted(key for key, value in model.items() if defaults[key] == value)
        assert not same, f"{path.name} repeats defaults: {same}"
