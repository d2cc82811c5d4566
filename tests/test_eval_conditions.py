"""ros-pgpt eval --conditions: held-out sets per condition and the prompt changes they ask."""
import json
import re

import numpy as np
import pytest

from ros_pgpt.data import COLOURS, SHAPES, SIZES, SceneGenerator
from ros_pgpt.data.camera import HELD_OUT_PHOTOS
from ros_pgpt.data.corpus import text_corpus
from ros_pgpt.data.held_out_words import TEST_SYNONYMS, with_test_synonyms
from ros_pgpt.training.eval_conditions import (
    CONDITIONS,
    CONDITION_NAMES,
    UNKNOWN_CONCEPTS,
    condition_samples,
    conditions_table,
    unknown_concept_prompt,
    user_wording,
)
from ros_pgpt.training.evaluate import main as eval_main

VOCABULARY = set(COLOURS) | set(SHAPES) | set(SIZES) | {s + "s" for s in SHAPES}
SYNONYMS = set(TEST_SYNONYMS) | {s + ending for s in TEST_SYNONYMS for ending in ("s", "es")}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z'<>-]+", text.lower())


@pytest.fixture(scope="module")
def prompts():
    generator = SceneGenerator()
    return [q.prompt for seed in range(80) for q in generator.sample(seed).queries]


def test_user_wording_changes_the_form_and_keeps_the_content(prompts):
    rng = np.random.default_rng(0)
    changed = 0
    for prompt in prompts:
        typed = user_wording(prompt, rng)
        if "<box>" in prompt:
            assert typed is None
            continue
        changed += typed != prompt
        assert sorted(w for w in words(typed) if w in VOCABULARY) == sorted(w for w in words(prompt)
                                                                           if w in VOCABULARY), (prompt, typed)
    assert changed >= 0.8 * sum("<box>" not in p for p in prompts)
    reordered = {user_wording("find the red circle", np.random.default_rng(seed)) for seed in range(200)}
    assert any("circle that is red" in r.lower() for r in reordered)
    assert any(r.isupper() for r in reordered) and any("please" in r.lower() for r in reordered)


def test_held_out_synonyms_replace_every_vocabulary_word(prompts):
    synonyms_condition = next(c for c in CONDITIONS if c.name == "synonyms")
    assert synonyms_condition.prompts is with_test_synonyms
    rng = np.random.default_rng(0)
    asked = 0
    for prompt in prompts:
        changed = synonyms_condition.prompts(prompt, rng)
        if "<box>" in prompt or not set(words(prompt)) & VOCABULARY:
            assert changed is None
            continue
        asked += 1
        assert not set(words(changed)) & VOCABULARY, changed
        assert set(words(changed)) & SYNONYMS, changed
    assert asked > 100


def test_held_out_and_unknown_words_never_occur_in_training_text():
    trained = {w for text in text_corpus(600, seed=0) for w in words(text)}
    unknown = {w for concept in UNKNOWN_CONCEPTS for w in concept.split()}
    assert not trained & SYNONYMS and not trained & unknown
    rng = np.random.default_rng(1)
    asked = [unknown_concept_prompt(rng) for _ in range(50)]
    assert all(set(words(p)) & unknown for p in asked)


def test_conditions_have_their_own_seeds_and_held_out_photographs():
    assert len(set(CONDITION_NAMES)) == len(CONDITIONS)
    assert len({c.seed for c in CONDITIONS}) == len(CONDITIONS)
    photos = next(c for c in CONDITIONS if c.name == "photos")
    backgrounds = {s.scene.background for _, s in condition_samples(photos, 30)}
    assert backgrounds <= {"photo:" + n for n in HELD_OUT_PHOTOS} and len(backgrounds) >= 3
    clean = next(c for c in CONDITIONS if c.name == "clean")
    first = next(condition_samples(clean, 1))[1]
    from ros_pgpt.training.evaluate import held_out_samples

    plain = next(held_out_samples(1))[1]
    assert first.scene.image.tobytes() != plain.scene.image.tobytes()


def test_eval_conditions_end_to_end_on_the_shipped_checkpoint(tmp_path, capsys):
    report_path = tmp_path / "conditions.json"
    assert eval_main(["--conditions", "clean,clutter,wording,unknown", "--samples", "2",
                      "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert list(report["conditions"]) == ["clean", "clutter", "wording", "unknown"]
    assert report["visual_tokens"] == report["max_visual_tokens"]
    for name in ("clean", "clutter", "wording"):
        metrics = report["conditions"][name]
        assert metrics["counts"]["single"] + metrics["counts"]["absent"] + metrics["counts"]["plural_targets"] > 0
        for key in ("acc50", "plural_f1", "absent_acc"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    unknown = report["conditions"]["unknown"]
    assert unknown["counts"]["prompts"] == 8 and 0.0 <= unknown["object_rate"] <= 1.0
    table = capsys.readouterr().out
    assert table == conditions_table(report["conditions"]) + "\n"
    assert "| clutter:" in table and "unknown" in table


def test_the_conditions_training_config_never_draws_held_out_photographs_or_resolutions():
    from dataclasses import replace

    from ros_helpers import REPO_ROOT

    from ros_pgpt.training.config import load_config
    from ros_pgpt.training.loop import scene_generator

    _, train_config = load_config(REPO_ROOT / "configs" / "conditions.yaml")
    mix = scene_generator(train_config)
    evaluated = next(c for c in CONDITIONS if c.name == "resolutions").scenes["resolutions"]
    for generator in mix.generators:
        assert not set(generator.photos) & set(HELD_OUT_PHOTOS)
        assert not set(generator.resolutions) & set(evaluated)
    assert any(g.photo_backgrounds for g in mix.generators) and any(g.distractors for g in mix.generators)
    leaky = replace(train_config, scene_mix=[{"weight": 1.0, "photo_backgrounds": 1.0,
                                               "photos": ["brick", HELD_OUT_PHOTOS[0]]}])
    with pytest.raises(ValueError, match=HELD_OUT_PHOTOS[0]):
        scene_generator(leaky)
