"""``ros-pgpt diagnose``: each single-object answer lands in exactly one outcome."""
from ros_pgpt.checkpoints import default_checkpoint
from ros_pgpt.data import SceneGenerator
import pytest

from ros_pgpt.tools.diagnose import (ABSENT_OUTCOMES, OUTCOMES, absent_outcome, diagnose, diagnosed_prompts,
                                     linear_probes, prompt_family, single_outcome, size_bin, visible_bin)
from ros_pgpt.training.eval_conditions import CONDITIONS, asked_prompts, condition_samples
from ros_pgpt.training.evaluate import held_out_samples
from ros_pgpt.data.geometry import box_iou
from ros_pgpt.inference.decoding import DecodingRules
from ros_pgpt.inference.predictor import GroundedObject, GroundingResult, Predictor


def _answer(*boxes, mask=None):
    objects = [GroundedObject(phrase="x", score=1.0, box=box, mask=mask) for box in boxes]
    return GroundingResult(prompt="p", answer="", objects=objects, visual_tokens=64, frame_cached=False)


def test_outcomes_of_a_first_object():
    sample = next(s for s in (SceneGenerator(resolutions=[(640, 480)]).sample(i) for i in range(50))
                  if len(s.scene.objects) >= 2 and any(q.kind == "single" for q in s.queries))
    scene, query = sample.scene, next(q for q in sample.queries if q.kind == "single")
    target = scene.objects[query.targets[0]]
    other = next(o for i, o in enumerate(scene.objects) if i != query.targets[0])
    x0, y0, x1, y1 = target.box
    assert single_outcome(scene, query, _answer(target.box, mask=target.mask)) == ("right", 1.0)
    assert single_outcome(scene, query, _answer(other.box, target.box))[0] == "other_object"  # the first counts
    half = (x0 + (x1 - x0) * 0.6, y0, x1 + (x1 - x0) * 0.6, y1)  # IoU 0.25 with the target
    covers_another = any(box_iou(half, o.box) >= 0.5 for o in scene.objects)
    assert single_outcome(scene, query, _answer(half))[0] == ("other_object" if covers_another else "loose")
    assert single_outcome(scene, query, _answer((-50.0, -50.0, -40.0, -40.0)))[0] == "off"
    assert single_outcome(scene, query, _answer()) == ("none", None)


def test_a_miss_in_a_one_object_scene_has_no_other_object_to_blame():
    sample = next(s for s in (SceneGenerator(resolutions=[(640, 480)]).sample(i) for i in range(200))
                  if len(s.scene.objects) == 1 and any(q.kind == "single" for q in s.queries))
    query = next(q for q in sample.queries if q.kind == "single")
    assert single_outcome(sample.scene, query, _answer((-50.0, -50.0, -40.0, -40.0)))[0] == "off"


def test_outcomes_on_distractors_and_refusals():
    generator = SceneGenerator(min_objects=8, max_objects=11, distractors=0.5, resolutions=[(640, 480)])
    sample = next(s for s in (generator.sample(i) for i in range(50))
                  if any(q.kind == "single" for q in s.queries) and any(q.kind == "absent" for q in s.queries)
                  and any(all(box_iou(d.box, o.box) < 0.5 for o in s.scene.objects) for d in s.scene.distractors))
    scene, query = sample.scene, next(q for q in sample.queries if q.kind == "single")
    apart = next(d for d in scene.distractors if all(box_iou(d.box, o.box) < 0.5 for o in scene.objects))
    assert single_outcome(scene, query, _answer(apart.box))[0] == "distractor"
    assert single_outcome(scene, query, _answer(), refused=True) == ("refused", None)
    assert absent_outcome(scene, _answer()) == "none"
    assert absent_outcome(scene, _answer(), refused=True) == "refused"
    assert absent_outcome(scene, _answer(scene.objects[0].box)) == "object"
    assert absent_outcome(scene, _answer(apart.box)) == "distractor"
    assert absent_outcome(scene, _answer((-50.0, -50.0, -40.0, -40.0))) == "off"


def test_visible_share_bins():
    scene = next(s for s in (SceneGenerator(occlusion=1.0, truncation=0.5).sample(i) for i in range(40))
                 if any(o.visible_fraction < 0.8 for o in s.scene.objects)).scene
    assert {visible_bin(o) for o in scene.objects if o.visible_fraction == 1.0} <= {"whole"}
    assert {visible_bin(o) for o in scene.objects if o.visible_fraction < 0.8} == {"<80 %"}


def test_a_condition_is_diagnosed_on_its_own_scenes_and_prompts():
    synonyms = next(c for c in CONDITIONS if c.name == "synonyms")
    diagnosed = list(diagnosed_prompts(3, seed=3, condition="synonyms"))
    expected = [list(asked_prompts(synonyms, sample, index, seed=3))
                for index, sample in condition_samples(synonyms, 3, seed=3)]
    assert [[(q.prompt, asked) for q, asked in prompts] for _, _, prompts in diagnosed] == \
        [[(q.prompt, asked) for q, asked in prompts] for prompts in expected]
    assert any(asked != q.prompt for prompts in expected for q, asked in prompts), "synonyms change the words"
    for name in ("unknown", "nonsense"):
        with pytest.raises(ValueError, match="cannot diagnose condition"):
            next(diagnosed_prompts(1, seed=0, condition=name))


def test_size_bins_by_longer_side():
    assert size_bin((0, 0, 29, 10)) == "<30"
    assert size_bin((0, 0, 10, 30)) == "30-50"
    assert size_bin((5, 5, 84, 20)) == "50-80"
    assert size_bin((0, 0, 80, 80)) == ">=80"


def test_prompt_families():
    kinds = {prompt_family(q) for _, s in held_out_samples(60) for q in s.queries
             if q.kind in ("single", "relation_box")}
    assert kinds == {"attribute", "superlative", "relation", "relation_box"}


def test_report_counts_every_prompt_once():
    predictor = Predictor.from_checkpoint(default_checkpoint())
    report = diagnose(predictor, samples=6, seed=3, lone=4)
    expected = sum(q.kind in ("single", "relation_box") for _, s in held_out_samples(6, seed=3) for q in s.queries)
    assert report["single"]["prompts"] == expected == sum(report["single"][o] for o in OUTCOMES)
    assert sum(sum(family.values()) for family in report["by_family"].values()) == expected
    assert sum(sum(size.values()) for size in report["by_target_size"].values()) == expected
    assert sum(sum(share.values()) for share in report["by_visible_share"].values()) == expected
    assert sum(sum(kind.values()) for kind in report["by_background"].values()) == expected
    assert set(report["by_background"]) <= {s.scene.background for _, s in held_out_samples(6, seed=3)}
    absent = sum(q.kind == "absent" for _, s in held_out_samples(6, seed=3) for q in s.queries)
    assert report["absent"]["prompts"] == absent == sum(report["absent"][o] for o in ABSENT_OUTCOMES)
    assert report["single"]["refused"] == report["absent"]["refused"] == 0, "the generator's words are known"
    assert report["single"]["right"] > 0, "the trained default checkpoint finds some targets"
    assert 0.0 < report["mask_iou_when_right"]["mean"] <= 1.0
    plural = report["plural"]
    assert plural["prompts"] >= plural["too_few"] + plural["too_many"]
    assert plural["prompts"] >= plural["several_targets"] >= plural["several_targets_several_found"]
    readout = report["attribute_readout"]  # the default checkpoint keeps its attribute heads
    for side in ("pixels", "visual_tokens"):
        objects, every = readout[side]["object_cells"], readout[side]["all_cells"]
        assert 0.5 < objects["accuracy"] <= every["accuracy"], "objects are the hard cells; empty ones are easy"
        assert objects["cross_entropy"] >= every["cross_entropy"]
        assert set(objects["accuracy_by_attribute"]) == {"colour", "shape", "size"}
        assert min(objects["accuracy_by_attribute"].values()) <= objects["accuracy"] \
            <= max(objects["accuracy_by_attribute"].values())
    lone = report["lone_objects"]
    assert lone["scenes"] == 4 and lone["boxed"] >= 3, "a lone object asked for by colour and shape is found"
    assert 0.0 <= lone["score_min"] <= lone["score_median"] <= lone["score_max"] <= 1.0
    assert lone["refused_at"]["0.2"] <= lone["refused_at"]["0.5"] <= 4
    assert predictor.rules == DecodingRules(), "the predictor's rules are restored"
    assert report["linear_probes"] is None, "probes are opt-in"


def test_linear_probes_read_what_the_visual_tokens_carry():
    model = Predictor.from_checkpoint(default_checkpoint()).model
    items = [(s.scene, s.queries) for _, s in held_out_samples(8, seed=3)]
    fit = [(s.scene, s.queries) for _, s in held_out_samples(30, seed=7)]
    probes = linear_probes(model, items, fit_items=fit)
    assert probes["fit_cells"] > probes["cells"] > 0
    for stage in ("projector_output", "llm_output"):
        assert set(probes[stage]) == {"colour", "shape", "size"}
        for name in ("colour", "shape"):  # six and four classes: a probe that learned nothing scores near
            assert probes[stage][name] > probes["commonest_class"][name] + 0.1, (stage, name, probes)
