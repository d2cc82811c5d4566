"""Standing prompts: one message per frame, prompt control (service, topic, CLI), tracking, cropped masks.

One node (rate 0: every frame gets a standing run) over the real middleware.
Each prompt change is checked on the next frame the node receives.
"""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from node_support import NodeUnderTest, scene
from ros_helpers import REPO_ROOT

pytestmark = pytest.mark.ros

FIRST = ['point to every shape', 'where is the red object?']


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    with NodeUnderTest(tmp_path_factory.mktemp('node_prompts'),
                       {'standing_prompts': FIRST, 'rate': 0.0, 'max_image_age': 0.0, 'masks': True}) as n:
        yield n


class Frames:
    """Publishes frames with increasing stamps and returns the standing result of each."""

    def __init__(self):
        self.sec = 5000

    def standing_result(self, node, image=None, timeout=60.0):
        self.sec += 1
        sec = self.sec
        node.publish_frame(scene(31).scene.image if image is None else image, stamp=(sec, 0), settle=0)
        return node.spin_until(lambda: next((d for d in node.detections if d.header.stamp.sec == sec), None),
                               timeout, f'standing result for frame {sec}')

    def nothing_for_next(self, node, wait=3.0):
        self.sec += 1
        sec = self.sec
        node.publish_frame(scene(31).scene.image, stamp=(sec, 0), settle=wait)
        return not [d for d in node.detections if d.header.stamp.sec == sec]


@pytest.fixture(scope='module')
def frames():
    return Frames()


def set_prompts(node, mode, prompts=()):
    """Call ~/set_prompts; ``mode`` is a SetPrompts constant's name (or a number)."""
    from ros_pgpt.srv import SetPrompts

    number = mode if isinstance(mode, int) else getattr(SetPrompts.Request, mode)
    return node.call_service(SetPrompts, 'set_prompts', SetPrompts.Request(mode=number, prompts=list(prompts)))


def standing_parameter(node):
    from rcl_interfaces.srv import GetParameters

    response = node.call_service(GetParameters, 'get_parameters', GetParameters.Request(names=['standing_prompts']))
    return list(response.values[0].string_array_value)


def parameter_names(node):
    from rcl_interfaces.srv import ListParameters

    return list(node.call_service(ListParameters, 'list_parameters', ListParameters.Request()).result.names)


# ------------------------------------------------------------------ one message per frame
def test_every_standing_prompt_of_a_frame_in_one_message(node, frames):
    sample = scene(31)
    result = frames.standing_result(node, sample.scene.image)
    node.spin(1.0)  # a second message for the frame would arrive now
    same_frame = [d for d in node.detections if d.header.stamp.sec == frames.sec]
    assert len(same_frame) == 1, [d.prompt for d in same_frame]
    assert result.standing and result.prompt.split('\n') == FIRST
    assert len(result.answer.split('\n')) == 2 and '<obj>' not in result.answer
    assert result.objects, 'a scene full of shapes: "point to every shape" finds some'
    assert {o.prompt for o in result.objects} <= set(FIRST)
    for obj in result.objects:
        assert obj.track_id > 0
        assert obj.phrase in ('shape', 'red object')
        # cropped masks (the default): the crop covers the box, offsets place it
        x0, y0 = obj.mask_x_offset, obj.mask_y_offset
        assert x0 <= obj.x_min + 1 and y0 <= obj.y_min + 1
        assert x0 + obj.mask.width >= obj.x_max - 1 and y0 + obj.mask.height >= obj.y_max - 1
        assert obj.mask.width * obj.mask.height < 640 * 480 / 2
    assert len({o.track_id for o in result.objects}) == len(result.objects), 'ids are unique in a frame'


# ------------------------------------------------------------------ prompt control
def test_set_prompts_service_on_the_next_frame(node, frames):
    response = set_prompts(node, 'REPLACE', ['  the blue object  '])
    assert response.success, response.message
    assert list(response.prompts) == ['the blue object'] == standing_parameter(node)
    assert frames.standing_result(node).prompt == 'the blue object'

    response = set_prompts(node, 'ADD', ['every star', 'the blue object'])
    assert response.success and list(response.prompts) == ['the blue object', 'every star']
    assert frames.standing_result(node).prompt == 'the blue object\nevery star'

    refused = set_prompts(node, 'REMOVE', ['not standing'])
    assert not refused.success and 'not standing' in refused.message
    assert list(refused.prompts) == ['the blue object', 'every star'], 'a refused call changes nothing'
    refused = set_prompts(node, 'ADD', ['two\nlines'])
    assert not refused.success and 'line break' in refused.message
    refused = set_prompts(node, 'REPLACE', [' '])
    assert not refused.success and 'empty' in refused.message
    refused = set_prompts(node, 9)
    assert not refused.success and 'unknown mode 9' in refused.message
    assert set_prompts(node, 'REMOVE', ['the blue object']).prompts == ['every star']
    assert set_prompts(node, 'LIST').prompts == ['every star'] == standing_parameter(node)

    cleared = set_prompts(node, 'CLEAR')
    assert cleared.success and list(cleared.prompts) == [] == standing_parameter(node)
    assert frames.nothing_for_next(node), 'no standing prompts: no standing result'


def test_prompts_topic_on_the_next_frame(node, frames):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from ros_helpers import wait_for

    topic = f'{node.node_fqn}/prompts'
    pub = node.ros.create_publisher(String, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    try:
        wait_for(lambda: pub.get_subscription_count() > 0, 20.0, message='node subscribed to ~/prompts')
        (info,) = node.ros.get_subscriptions_info_by_topic(topic)
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE and info.qos_profile.depth in (0, 10)
        assert f'qos_overrides.{topic}.subscription.durability' in parameter_names(node), 'QoS overridable'
        pub.publish(String(data='the red object\n\n  every circle \nthe red object'))
        node.spin_until(lambda: standing_parameter(node) == ['the red object', 'every circle'], 20.0,
                        'standing_prompts set from ~/prompts')
        assert frames.standing_result(node).prompt == 'the red object\nevery circle'
        pub.publish(String(data='point to every shape'))  # one prompt per message: it replaces the list
        node.spin_until(lambda: standing_parameter(node) == ['point to every shape'], 20.0, 'one prompt')
        assert frames.standing_result(node).prompt == 'point to every shape'
    finally:
        node.ros.destroy_publisher(pub)


def _cli(node, *args):
    return subprocess.run([sys.executable, '-m', 'ros_pgpt', 'prompts', *args, '--node', node.node_fqn],
                          capture_output=True, text=True, timeout=120, env=node.env, cwd=REPO_ROOT)


def test_prompts_cli_on_the_next_frame(node, frames):
    done = _cli(node, 'set', 'the green object', 'every square')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['the green object', 'every square']
    assert frames.standing_result(node).prompt == 'the green object\nevery square'
    done = _cli(node, 'remove', 'no such prompt')
    assert done.returncode == 1 and 'not standing' in done.stderr
    done = _cli(node, 'list')
    assert done.returncode == 0 and done.stdout.splitlines() == ['the green object', 'every square']
    done = _cli(node, 'clear')
    assert done.returncode == 0 and '(no standing prompts)' in done.stdout
    assert standing_parameter(node) == []


# ------------------------------------------------------------------ tracking over a replayed bag
def moving_object_frames(count=20, step=6):
    """(prompt, frames, true boxes): one object of a generated scene slides right ``step`` px a frame.

    The object's pixels are cut out, the hole inpainted from the background,
    and the object pasted back further right in each frame.
    """
    for seed in range(100, 200):
        sample = scene(seed)
        objects = sample.scene.objects
        for obj in objects:
            words = (obj.size, obj.colour, obj.shape)
            unique = sum((o.size, o.colour, o.shape) == words for o in objects) == 1
            x0, y0, x1, y1 = (int(v) for v in obj.box)
            path = (x0, y0, x1 + step * (count - 1), y1)
            clear = all(o is obj or not _overlaps(path, o.box) for o in objects)
            if unique and obj.visible_fraction > 0.99 and clear and path[2] < 640:
                break
        else:
            continue
        image = sample.scene.image
        cut = cv2.dilate(obj.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        background = cv2.inpaint(image, cut.astype(np.uint8), 5, cv2.INPAINT_TELEA)
        ys, xs = np.nonzero(cut)
        frames_, boxes = [], []
        for i in range(count):
            frame = background.copy()
            frame[ys, xs + step * i] = image[ys, xs]
            frames_.append(frame)
            boxes.append((obj.box[0] + step * i, obj.box[1], obj.box[2] + step * i, obj.box[3]))
        return f'the {obj.size} {obj.colour} {obj.shape}', frames_, boxes
    raise AssertionError('no scene with a lone, unoccluded object that has room to move')


def _overlaps(a, b, margin=4):
    return a[0] - margin < b[2] and b[0] < a[2] + margin and a[1] - margin < b[3] and b[1] < a[3] + margin


def test_track_ids_stay_the_same_across_a_replayed_bag(node, tmp_path):
    from ros_pgpt.ros.bags import replay, write_image_bag
    from ros_pgpt.data.geometry import box_iou

    prompt, images, boxes = moving_object_frames()
    bag = tmp_path / 'moving'
    start_sec = 7000
    topic, _ = write_image_bag(bag, images, fps=10.0, start_sec=start_sec)
    assert set_prompts(node, 'REPLACE', [prompt]).success
    node.detections.clear()
    # Replayed at 1/10 speed (one frame a second): every frame gets its standing run on a loaded 2-core machine.
    sent = replay(bag, rate=0.1, remap={topic: node.camera}, context=node.context, log=lambda *_: None)
    assert sent == len(images)
    node.spin_until(lambda: any(d.header.stamp.sec == start_sec + 1 and d.header.stamp.nanosec == 900_000_000
                                for d in node.detections), 60.0, 'the last frame\'s result')
    results = {round((d.header.stamp.sec - start_sec) * 10 + d.header.stamp.nanosec / 1e8): d
               for d in node.detections if d.standing and d.header.stamp.sec >= start_sec}
    assert sorted(results) == list(range(len(images))), 'a standing result for every replayed frame'
    ids = []
    for i, truth in enumerate(boxes):
        found = [o for o in results[i].objects if box_iou((o.x_min, o.y_min, o.x_max, o.y_max), truth) > 0.5]
        assert found, f'frame {i}: the moving object was not found ({len(results[i].objects)} objects)'
        ids.append(found[0].track_id)
    assert ids[0] > 0 and set(ids) == {ids[0]}, f'the moving object changed id: {ids}'


# ------------------------------------------------------------------ masks: cropped by default, full on request
def test_query_masks_cropped_unless_full_frame_asked(node):
    image = scene(32).scene.image
    cropped = node.query('point to every shape', image, masks=True)
    full = node.query('point to every shape', image, masks=True, full_frame_masks=True)
    assert cropped.success and full.success, (cropped.message, full.message)
    assert cropped.result.objects and len(cropped.result.objects) == len(full.result.objects)
    from ros_pgpt.ros.conversions import mask_from_image_msg, mask_in_frame

    for crop, whole in zip(cropped.result.objects, full.result.objects):
        assert (whole.mask.width, whole.mask.height, whole.mask_x_offset, whole.mask_y_offset) == (640, 480, 0, 0)
        assert crop.mask.width < 640 and crop.track_id == 0 and whole.track_id == 0
        assert np.array_equal(mask_in_frame(crop, 640, 480), mask_from_image_msg(whole.mask))


def test_node_still_alive(node):
    assert node.proc.alive(), node.output()[-2000:]
