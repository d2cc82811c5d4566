"""One decoding-rules object (``ros_pgpt.inference.decoding.DecodingRules``): the node's parameters, its
launch config, the CLI flags, the Predictor and the docs all say what it says."""
import argparse
import ast
import inspect
import re
from dataclasses import fields, replace

import pytest
import yaml

from ros_helpers import REPO_ROOT
from ros_pgpt.inference.decoding import DecodingRules

RULES = DecodingRules()
NAMES = [f.name for f in fields(DecodingRules)]


def _node_rules():
    """(parameter, rule value) of every node parameter that is a decoding rule."""
    from ros_pgpt.ros.params import PARAMS

    return [(p, getattr(RULES, p.name)) for p in PARAMS if p.name in NAMES]


def _yaml_text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def test_every_rule_has_a_one_line_reason():
    tree = ast.parse(inspect.getsource(DecodingRules))
    lines = inspect.getsource(DecodingRules).splitlines()
    fields_at = [node.lineno for node in tree.body[0].body if isinstance(node, ast.AnnAssign)]
    assert len(fields_at) == len(NAMES)
    for line in fields_at:
        assert lines[line - 2].strip().startswith("# "), f"no reason comment above: {lines[line - 1].strip()}"


def test_rules_are_frozen():
    with pytest.raises(AttributeError):
        RULES.match_threshold = 0.5
    assert replace(RULES, match_threshold=0.5).match_threshold == 0.5 and RULES.match_threshold == 0.4


def test_node_parameters_default_to_the_rules():
    node = dict((p.name, (p, value)) for p, value in _node_rules())
    assert {"match_threshold", "next_object_threshold", "first_object_threshold", "refine_masks"} <= set(node)
    for name, (param, value) in node.items():
        assert param.default == value, name
        assert param.load_time, f"{name}: the predictor is built with it, so it is a load-time parameter"


def test_launch_config_says_what_the_rules_say():
    params = yaml.safe_load((REPO_ROOT / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    for param, value in _node_rules():
        assert param.name in params, f"config/perception.yaml does not list {param.name}"
        assert params[param.name] == value, param.name


def test_node_doc_table_says_what_the_rules_say():
    text = (REPO_ROOT / "docs" / "NODE.md").read_text()
    for param, value in _node_rules():
        row = re.search(rf"^\| `{param.name}` \| ([^|]+) \|", text, re.M)
        assert row, f"docs/NODE.md's parameter table has no row for {param.name}"
        assert row.group(1).strip() == _yaml_text(value), (param.name, row.group(1))


def test_model_doc_rules_table_says_what_the_rules_say():
    """docs/MODEL.md's run-time rules table names every rule as `DecodingRules.<field> = <value>`."""
    text = (REPO_ROOT / "docs" / "MODEL.md").read_text()
    table = text[text.index("## Run-time rules"):]
    table = table[:table.index("\n## ")]
    written = dict(re.findall(r"`DecodingRules\.(\w+) = ([^`]+)`", table))
    assert set(written) == set(NAMES), f"rules missing from the table: {set(NAMES) - set(written)}"
    for name, value in written.items():
        assert ast.literal_eval(value) == getattr(RULES, name), (name, value)


def test_cli_flags_default_to_the_rules():
    from ros_pgpt.training.evaluate import add_held_out_arguments

    parser = argparse.ArgumentParser()
    add_held_out_arguments(parser, samples=1)
    args = parser.parse_args([])
    flags = [name for name in NAMES if hasattr(args, name)]
    assert {"match_threshold", "next_object_threshold", "first_object_threshold"} <= set(flags)
    for name in flags:
        assert getattr(args, name) == getattr(RULES, name), name


class _Tokenizer:
    def encode(self, text, add_special_tokens=False):
        return [7]


class _Engine:
    tokenizer = _Tokenizer()


def test_predictor_takes_the_rules_and_keyword_overrides():
    from ros_pgpt.inference.predictor import Predictor

    assert Predictor.from_engine(_Engine()).rules == RULES
    chosen = DecodingRules(match_threshold=0.3, refine_masks=False)
    assert Predictor.from_engine(_Engine(), rules=chosen).rules == chosen
    predictor = Predictor.from_engine(_Engine(), rules=chosen, next_object_threshold=0.5)
    assert predictor.rules == replace(chosen, next_object_threshold=0.5)
    with pytest.raises(TypeError):
        Predictor.from_engine(_Engine(), match_treshold=0.3)  # a misspelt rule is an error, not ignored


def test_answer_token_limit():
    assert RULES.answer_token_limit() == 12
    assert replace(RULES, max_answer_tokens=5).answer_token_limit() == 5

