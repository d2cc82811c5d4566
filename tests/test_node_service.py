"""The perception node's ~/query service over the real middleware (one node per module).

The node runs as a child process with config/perception.yaml plus overrides,
the real default checkpoint, an isolated ROS world and a unique namespace.
Tests run in file order: the first one needs a node that has seen no frame.
"""
import time

import numpy as np
import pytest

from node_support import NodeUnderTest, mask_array, scene

pytestmark = pytest.mark.ros

MAX_AGE = 1.5


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    with NodeUnderTest(tmp_path_factory.mktemp('node_service'),
                       {'max_image_age': MAX_AGE, 'queue_size': 1, 'fault_log_period': 30.0}) as n:
        yield n


@pytest.fixture(scope='module')
def sample():
    return scene(11)


def good_query(node, sample):
    """A query that must work (run after every bad input: the node keeps serving)."""
    response = node.query('point to every shape', sample.scene.image)
    assert response.success, response.message
    return response


# ------------------------------------------------------------------ before any frame
def test_query_before_any_frame_fails_clearly(node):
    response = node.query('where is the red star?')
    assert not response.success
    assert 'no frame received' in response.message and node.camera in response.message


# ------------------------------------------------------------------ inline images
def test_inline_query_result_shapes_and_header(node, sample):
    image = sample.scene.image
    h, w = image.shape[:2]
    response = node.query('point to every shape', image, masks=True, frame_id='inline_cam', stamp=(42, 7))
    assert response.success, response.message
    assert response.message == ''
    result = response.result
    assert result.header.frame_id == 'inline_cam'
    assert (result.header.stamp.sec, result.header.stamp.nanosec) == (42, 7)
    assert result.prompt == 'point to every shape'
    assert result.visual_tokens == 64
    assert result.total_ms > 0 and result.prefill_ms > 0
    assert result.total_ms >= result.prefill_ms
    assert len(result.objects) >= 1, 'a trained model finds shapes in a scene full of them'
    for obj in result.objects:
        assert 0.0 <= obj.score <= 1.0
        assert -1 <= obj.x_min < obj.x_max <= w + 1 and -1 <= obj.y_min < obj.y_max <= h + 1
        assert obj.mask.encoding == 'mono8'
        # cropped to the box (the default), placed by its offsets
        assert obj.mask_x_offset <= obj.x_min + 1 and obj.mask_y_offset <= obj.y_min + 1
        assert obj.mask_x_offset + obj.mask.width >= obj.x_max - 1
        assert obj.mask_y_offset + obj.mask.height >= obj.y_max - 1
        assert obj.mask_x_offset + obj.mask.width <= w and obj.mask_y_offset + obj.mask.height <= h
        assert mask_array(obj, w, h).any()
        assert obj.mask.header.frame_id == 'inline_cam'
        assert obj.prompt == 'point to every shape' and obj.phrase == 'shape' and obj.track_id == 0
        assert set(np.unique(np.frombuffer(bytes(obj.mask.data), np.uint8))) <= {0, 255}


def test_detections_published_for_each_query(node, sample):
    before = len(node.detections)
    response = node.query('where is the blue object?', sample.scene.image, frame_id='det_cam', stamp=(43, 0))
    assert response.success, response.message
    node.spin_until(lambda: any(d.header.frame_id == 'det_cam' for d in node.detections[before:]), 10.0,
                    'detections message for the query')
    det = next(d for d in node.detections[before:] if d.header.frame_id == 'det_cam')
    assert det.prompt == 'where is the blue object?'
    assert det.header.stamp.sec == 43
    assert len(det.objects) == len(response.result.objects)


def test_masks_only_when_asked(node, sample):
    response = node.query('point to every shape', sample.scene.image, masks=False)
    assert response.success, response.message
    assert response.result.objects, 'expected objects'
    for obj in response.result.objects:
        assert obj.mask.width == 0 and obj.mask.height == 0 and len(obj.mask.data) == 0


def test_frame_cache_skips_vision_on_same_image(node):
    image = scene(12).scene.image
    first = node.query('where is the red object?', image, stamp=(50, 0))
    second = node.query('point to every shape', image, stamp=(50, 0))
    assert first.success and second.success
    assert not first.result.frame_cached and first.result.vision_ms > 0
    assert second.result.frame_cached and second.result.vision_ms == 0
    other = image.copy()
    other[:8, :8] = 0  # same header, different content: not the cached frame
    third = node.query('point to every shape', other, stamp=(50, 0))
    assert third.success and not third.result.frame_cached


def test_fewer_visual_tokens(node, sample):
    response = node.query('point to every shape', sample.scene.image, tokens=20)
    assert response.success, response.message
    assert response.result.visual_tokens == 16  # largest square <= 20


def test_clearly_visible_single_object_found(node):
    """Accuracy smoke test: an object alone in a scene (large or small), named by colour and shape, is found.

    Depends on the trained default checkpoint (an untrained one fails). The shipped model boxes 17 of
    the 20 lone objects of seeds 0-19 at the node's match threshold 0.4 (`ros-pgpt diagnose --lone 20`:
    18 boxed with refusals off; the LLM answers "none" to seeds 1 and 11 and the match head refuses seed 7
    at 0.4 and 0.5, so 3 missed at either); it misses seeds 1, 7 and 11
    (docs/MODEL.md, item 19; the checkpoints before missed 7 and 11, and 0 and 7). So at most two misses
    in ten, and every object found is boxed.
    """
    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.data.geometry import box_iou

    generator = SceneGenerator(resolutions=[(640, 480)], min_objects=1, max_objects=1)
    missed = []
    for seed in range(10):
        s = generator.sample(seed, n_queries=1)
        obj = s.scene.objects[0]
        response = node.query(f'where is the {obj.colour} {obj.shape}?', s.scene.image, masks=True)
        assert response.success, response.message
        found = response.result.objects
        assert len(found) <= 1, f'seed {seed}: {len(found)} objects for one {obj.colour} {obj.shape}'
        if not found:
            missed.append(f'{seed} ({obj.size} {obj.colour} {obj.shape})')
            continue
        iou = box_iou((found[0].x_min, found[0].y_min, found[0].x_max, found[0].y_max), obj.box)
        assert iou > 0.5, f'seed {seed}: IoU {iou:.2f} for the {obj.size} {obj.colour} {obj.shape}'
    assert len(missed) <= 2, f'lone objects answered "none": {missed}'


# ------------------------------------------------------------------ the camera stream
def test_latest_frame_query_uses_camera_header_and_cache(node):
    s = scene(21)
    node.publish_frame(scene(20).scene.image, stamp=(100, 0))
    node.publish_frame(s.scene.image, stamp=(100, 500_000_000), frame_id='camera_optical')
    first = node.query('point to every shape', masks=True)
    assert first.success, first.message
    assert first.result.header.frame_id == 'camera_optical'
    assert (first.result.header.stamp.sec, first.result.header.stamp.nanosec) == (100, 500_000_000)
    for obj in first.result.objects:
        assert 0 < obj.mask.width < 640 and 0 < obj.mask.height < 480, 'masks are cropped to their boxes'
    second = node.query('where is the red object?')
    assert second.success, second.message
    assert second.result.frame_cached, 'a second prompt on the same camera frame must reuse the vision features'
    assert second.result.vision_ms == 0


def test_replayed_bag_reaches_the_node(node, tmp_path):
    from ros_pgpt.ros.bags import make_sample_bag, replay

    bag = tmp_path / 'cam_bag'
    truth = make_sample_bag(bag, frames=6, fps=20.0, seed=3, width=320, height=240)
    sent = replay(bag, remap={truth['topic']: node.camera}, context=node.context, log=lambda *_: None)
    assert sent == 6
    # Delivery takes a moment after the last publish: ask until the answer comes from the bag's last frame.

    def answer_from_last_frame():
        response = node.query('point to every shape')
        assert response.success, response.message
        stamp = response.result.header.stamp
        return response if stamp.sec * 10**9 + stamp.nanosec == truth['last_stamp_ns'] else None

    response = node.spin_until(answer_from_last_frame, 10.0, "an answer from the bag's last frame")
    assert response.result.header.frame_id == truth['frame_id']


def test_stale_frame_refused(node):
    node.publish_frame(scene(22).scene.image, stamp=(200, 0))
    assert node.query('point to every shape').success
    time.sleep(MAX_AGE + 0.5)
    response = node.query('point to every shape')
    assert not response.success
    assert 'old' in response.message and 'max_image_age' in response.message
    # a fresh frame fixes it
    node.publish_frame(scene(22).scene.image, stamp=(201, 0))
    assert node.query('point to every shape').success


def test_latest_frame_query_reuses_the_frame_the_model_holds(node):
    def stamp(response):
        assert response.success, response.message
        return response.result.header.stamp.sec

    try:
        assert all(r.successful for r in node.set_parameters(frame_reuse_s=0.0))
        node.publish_frame(scene(23).scene.image, stamp=(300, 0))
        assert stamp(node.query('point to every shape')) == 300, '0 = always the newest frame'
        assert all(r.successful for r in node.set_parameters(frame_reuse_s=5.0))
        node.publish_frame(scene(24).scene.image, stamp=(301, 0))
        reused = node.query('where is the red object?')
        assert stamp(reused) == 300 and reused.result.frame_cached, 'a recent held frame answers'
        assert all(r.successful for r in node.set_parameters(frame_reuse_s=0.0))
        assert stamp(node.query('where is the red object?')) == 301
    finally:
        node.set_parameters(frame_reuse_s=0.2)


# ------------------------------------------------------------------ bad input
def _image_request(node, data=None, **fields):
    from ros_pgpt.ros import conversions

    req = node.request('point to every shape')
    req.image = conversions.rgb_to_image_msg(np.zeros((48, 64, 3), np.uint8))
    for k, v in fields.items():
        setattr(req.image, k, v)
    if data is not None:
        req.image.data = data
    return req


BAD_IMAGES = {
    'data_length': (dict(data=bytes(100)), ['100 bytes', 'step*height']),
    'short_step': (dict(step=10), ['step 10']),
    'encoding_16UC1': (dict(encoding='16UC1'), ['unsupported image encoding', '16UC1']),
    'encoding_bayer': (dict(encoding='bayer_rggb8'), ['unsupported image encoding', 'bayer_rggb8']),
    'zero_width': (dict(width=0, data=b''), ['zero size', '0x48']),
    'tiny': (dict(width=4, height=4, step=12, data=bytes(48)), ['too small']),
    'too_large': (dict(width=5000, height=5000, step=15000, data=b''), ['too large', '5000x5000', 'max_image_pixels']),
}


@pytest.mark.parametrize('case', sorted(BAD_IMAGES))
def test_bad_request_image(node, sample, case):
    fields, words = BAD_IMAGES[case]
    response = node.call(_image_request(node, **fields))
    assert not response.success
    for word in words:
        assert word in response.message, response.message
    good_query(node, sample)


@pytest.mark.parametrize('prompt,words', [
    ('', ['empty']),
    ('   \t ', ['empty']),
    ('x' * 513, ['513 characters', 'limit is 512']),
])
def test_bad_prompt(node, sample, prompt, words):
    response = node.query(prompt, sample.scene.image)
    assert not response.success
    for word in words:
        assert word in response.message, response.message
    good_query(node, sample)


def test_boxes_in_the_prompt_reach_the_model(node):
    """A "<box>" prompt with the request's boxes: the node answers exactly what the same model answers
    in-process for those boxes. (The shipped model's answers barely depend on the box, docs/MODEL.md,
    so the bad-box cases below show that the values arrive: a box outside the image is refused.)"""
    from ros_pgpt.checkpoints import default_checkpoint
    from ros_pgpt.data.phrases import object_phrase, readable_answer
    from ros_pgpt.inference.backends import create_predictor

    local = create_predictor(default_checkpoint(), backend='auto')  # as the node resolves it
    sample, query = next((s, q) for s in map(scene, range(20, 80)) for q in s.queries if q.kind == 'relation_box')
    image, boxes = sample.scene.image, [tuple(b) for b in query.input_boxes]

    def found(result):  # the node's answer is in words (ros_pgpt.data.phrases)
        words = readable_answer(result.answer, object_phrase(result.prompt), len(result.objects))
        return words, [np.round([*o.box, o.score], 3).tolist() for o in result.objects]

    response = node.query(query.prompt, image, boxes=boxes)
    assert response.success, response.message
    served = (response.result.answer, [np.round([o.x_min, o.y_min, o.x_max, o.y_max, o.score], 3).tolist()
                                       for o in response.result.objects])
    assert served == found(local.ground(image, query.prompt, boxes=boxes, masks=False))


@pytest.mark.parametrize('prompt,boxes,words', [
    ('what is in <box>?', [], ['1 <box> placeholders but 0 boxes']),
    ('where is the red star?', [(10, 10, 50, 50)], ['0 <box> placeholders but 1 boxes']),
    ('what is in <box>?', [(10, 10, 50)], ['3 values', 'four per box']),
    ('what is in <box>?', [(10, 10, float('nan'), 50)], ['NaN']),
    ('what is in <box>?', [(50, 10, 10, 50)], ['x_max > x_min']),
    ('what is in <box>?', [(700, 10, 720, 50)], ['box 0', 'outside the 640x480 image']),
])
def test_bad_boxes(node, sample, prompt, boxes, words):
    response = node.query(prompt, sample.scene.image, boxes=boxes)
    assert not response.success
    for word in words:
        assert word in response.message, response.message
    good_query(node, sample)


@pytest.mark.parametrize('tokens', [65, 1000, 65535])
def test_too_many_visual_tokens(node, sample, tokens):
    response = node.query('point to every shape', sample.scene.image, tokens=tokens)
    assert not response.success
    assert f'visual_tokens={tokens}' in response.message and 'maximum 64' in response.message
    good_query(node, sample)


def test_busy_instead_of_piling_up(node, sample):
    """queue_size 1: a burst of queries on new images gets some "busy" answers, the rest succeed."""
    futures = []
    for i in range(8):  # the client's response queue holds 10
        image = sample.scene.image.copy()
        image[i, i] ^= 0xFF  # a different frame each: no cache hits, every query runs the encoder
        futures.append(node.client.client.call_async(node.request('point to every shape', image, masks=True,
                                                                  stamp=(300 + i, 0))))
    node.spin_until(lambda: all(f.done() for f in futures), 120.0, 'all burst answers')
    responses = [f.result() for f in futures]
    busy = [r for r in responses if not r.success]
    assert busy, 'expected at least one busy answer with queue_size 1'
    assert all('busy' in r.message for r in busy), [r.message for r in busy]
    assert sum(r.success for r in responses) >= 2
    good_query(node, sample)


def test_faults_logged_throttled(node, sample):
    out = node.output()
    for kind in ('[no_frame]', '[data]', '[encoding]', '[size]', '[prompt]', '[visual_tokens]', '[stale]', '[busy]'):
        assert kind in out, f'no {kind} log line'
    before = node.output().count('[prompt]')
    for _ in range(5):
        assert not node.query('', sample.scene.image).success
    assert node.output().count('[prompt]') <= before + 1, 'bad prompts must be logged throttled (fault_log_period 30 s)'


# ------------------------------------------------------------------ overlay
def test_overlay_published_only_to_subscribers(node, sample):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    overlays = []
    topic = f'{node.ns}/ros_pgpt/overlay'
    sub = node.ros.create_subscription(Image, topic, overlays.append,
                                       QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    try:
        node.spin_until(lambda: node.ros.count_publishers(topic) >= 1, 20.0, 'overlay publisher')
        node.spin(1.0)  # let the node's publisher match the new subscription
        response = node.query('point to every shape', sample.scene.image, masks=True, frame_id='ov_cam', stamp=(400, 0))
        assert response.success, response.message
        msg = node.spin_until(lambda: next((m for m in overlays if m.header.frame_id == 'ov_cam'), None), 10.0, 'overlay')
        assert msg.encoding == 'rgb8'
        assert (msg.width, msg.height, msg.step) == (640, 480, 640 * 3)
        assert len(msg.data) == 640 * 480 * 3
        assert msg.header.stamp.sec == 400
        drawn = np.frombuffer(bytes(msg.data), np.uint8).reshape(480, 640, 3)
        assert not np.array_equal(drawn, sample.scene.image), 'boxes/masks must be drawn on the image'
    finally:
        node.ros.destroy_subscription(sub)
    node.spin(1.0)
    n = len(overlays)
    assert node.query('point to every shape', sample.scene.image, frame_id='ov_after').success
    node.spin(0.5)
    assert len(overlays) == n


# ------------------------------------------------------------------ parameters
def test_parameter_validation(node, sample):
    results = node.set_parameters(visual_tokens=100)
    assert not results[0].successful and 'maximum 64' in results[0].reason
    results = node.set_parameters(visual_tokens=5000)  # outside the descriptor range
    assert not results[0].successful
    results = node.set_parameters(rate=-1.0)
    assert not results[0].successful
    results = node.set_parameters(standing_prompts=['the red star', '  '])
    assert not results[0].successful and 'empty' in results[0].reason
    results = node.set_parameters(checkpoint='/somewhere/else')
    assert not results[0].successful and 'load-time' in results[0].reason
    results = node.set_parameters(input='hdr')
    assert not results[0].successful
    # valid run-time changes take effect
    assert node.set_parameters(max_prompt_chars=10)[0].successful
    try:
        response = node.query('x' * 11, sample.scene.image)
        assert not response.success and 'limit is 10' in response.message
    finally:
        assert node.set_parameters(max_prompt_chars=512)[0].successful
    assert node.set_parameters(visual_tokens=16)[0].successful
    try:
        response = node.query('point to every shape', sample.scene.image)
        assert response.success and response.result.visual_tokens == 16
    finally:
        assert node.set_parameters(visual_tokens=0)[0].successful
    assert node.set_parameters(score_threshold=1.0)[0].successful
    try:
        response = node.query('point to every shape', sample.scene.image)
        assert response.success and all(o.score >= 1.0 for o in response.result.objects)
    finally:
        assert node.set_parameters(score_threshold=0.0)[0].successful


@pytest.mark.parametrize('prompt, unknown', [
    ('the person', ['person']),
    ('the coffee mug', ['coffee', 'mug']),
    ('find the dog', ['dog']),
    ('the red car', ['car']),
])
def test_unknown_words_refused_not_answered(node, sample, prompt, unknown):
    """Words the model never saw: success=false naming them and pointing at the vocabulary, no object."""
    response = node.query(prompt, sample.scene.image)
    assert not response.success
    assert response.message.startswith('unknown words: '), response.message
    assert all(repr(word) in response.message for word in unknown), response.message
    assert 'ros_pgpt/data/PHRASING.md' in response.message
    assert not response.result.objects


def test_not_found_is_a_success(node, sample):
    """A prompt in the vocabulary that matches nothing is answered (no objects), unlike unknown words."""
    present = {(o.colour, o.shape) for o in sample.scene.objects}
    colour, shape = next((c, s) for c in ('purple', 'green', 'orange') for s in ('star', 'triangle')
                         if (c, s) not in present)
    response = node.query(f'where is the {colour} {shape}?', sample.scene.image)
    assert response.success and response.message == ''
    assert response.result.answer == 'none' and not response.result.objects


def test_free_wording_reaches_the_model_in_trained_phrasing(node, sample):
    """The node reads a prompt as typed in its trained phrasing: the same objects, canonical phrases."""
    typed = node.query("Where's the object that is BLUE, please", sample.scene.image)
    trained = node.query('where is the blue object?', sample.scene.image)
    assert typed.success and trained.success, typed.message + trained.message
    assert typed.result.prompt == "Where's the object that is BLUE, please"
    assert [(o.x_min, o.y_min, o.x_max, o.y_max) for o in typed.result.objects] == \
        [(o.x_min, o.y_min, o.x_max, o.y_max) for o in trained.result.objects]
    assert typed.result.objects and all(o.phrase == 'blue object' for o in typed.result.objects)


def test_standing_prompt_with_unknown_words_refused(node):
    results = node.set_parameters(standing_prompts=['the red star', 'the person'])
    assert not results[0].successful and "unknown words: 'person'" in results[0].reason


def test_query_command_line_unknown_words(node, sample, tmp_path):
    """`ros-pgpt query` exits 4 on a refusal for unknown words, 0 on "not found"."""
    import subprocess
    import sys

    from ros_helpers import REPO_ROOT
    from ros_pgpt.ros.query import EXIT_UNKNOWN_WORDS
    from ros_pgpt.ros.conversions import write_image_file

    image_file = tmp_path / 'scene.png'
    write_image_file(image_file, sample.scene.image)
    res = subprocess.run([sys.executable, '-m', 'ros_pgpt', 'query', '--service', node.service, '--timeout', '60',
                          'find the coffee mug', '--image', str(image_file)],
                         env=node.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == EXIT_UNKNOWN_WORDS == 4, res.stdout + res.stderr
    assert "unknown words: 'coffee', 'mug'" in res.stderr and 'PHRASING.md' in res.stderr


def test_node_still_alive(node):
    assert node.proc.alive(), node.output()[-2000:]


def test_query_command_line(node, sample, tmp_path):
    """`ros-pgpt query` against the running node: table, overlay file, exit codes."""
    import subprocess
    import sys

    from ros_helpers import REPO_ROOT
    from ros_pgpt.ros.conversions import read_image_file, write_image_file

    image_file = tmp_path / 'scene.png'
    write_image_file(image_file, sample.scene.image)
    base = [sys.executable, '-m', 'ros_pgpt', 'query', '--service', node.service, '--timeout', '60']
    res = subprocess.run(base + ['point to every shape', '--image', str(image_file), '--masks', '--tokens', '36',
                                 '--save', str(tmp_path / 'ov.png')],
                         env=node.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "prompt: 'point to every shape'" in res.stdout and 'visual tokens: 36' in res.stdout
    assert 'round trip' in res.stdout and 'mask px' in res.stdout
    assert read_image_file(tmp_path / 'ov.png').shape == (480, 640, 3)
    # latest camera frame, overlay taken from the node's ~/overlay (the command takes seconds to start)
    assert node.set_parameters(max_image_age=0.0)[0].successful
    try:
        node.publish_frame(sample.scene.image, stamp=(500, 0))
        res = subprocess.run(base + ['where is the red object?', '--save', str(tmp_path / 'ov2.png')],
                             env=node.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    finally:
        assert node.set_parameters(max_image_age=MAX_AGE)[0].successful
    assert res.returncode == 0, res.stdout + res.stderr
    assert '@ 500.000000000' in res.stdout
    assert read_image_file(tmp_path / 'ov2.png').shape == (480, 640, 3)
    box = [str(v) for v in sample.scene.objects[0].box]
    res = subprocess.run(base + ['what is in <box>?', '--image', str(image_file), '--box', *box],
                         env=node.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "prompt: 'what is in <box>?'" in res.stdout, res.stdout + res.stderr
    res = subprocess.run(base + ['   ', '--image', str(image_file)], env=node.env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and 'the prompt is empty' in res.stderr
