"""The public interface contract: names, fields, types, docs, serialization."""
import re

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from ros_pgpt.msg import GroundedObject, GroundedObjectArray
from ros_pgpt.srv import Query, SetPrompts
from ros_helpers import REPO_ROOT

TIMING_FIELDS = ('preprocess_ms', 'vision_ms', 'prefill_ms', 'decode_ms',
                 'perception_ms', 'postprocess_ms', 'total_ms')

# The public contract. Changing it breaks robots that use the node.
EXPECTED = {
    GroundedObject: {
        'phrase': 'string', 'score': 'float', 'x_min': 'float', 'y_min': 'float',
        'x_max': 'float', 'y_max': 'float', 'mask': 'sensor_msgs/Image',
        'prompt': 'string', 'track_id': 'uint32', 'mask_x_offset': 'uint32', 'mask_y_offset': 'uint32',
    },
    GroundedObjectArray: {
        'header': 'std_msgs/Header', 'prompt': 'string', 'answer': 'string',
        'visual_tokens': 'uint16', 'objects': 'sequence<ros_pgpt/GroundedObject>',
        **{name: 'float' for name in TIMING_FIELDS}, 'frame_cached': 'boolean', 'rejected': 'boolean',
        'standing': 'boolean',
    },
    Query.Request: {
        'prompt': 'string', 'boxes': 'sequence<float>', 'image': 'sensor_msgs/Image', 'visual_tokens': 'uint16',
        'masks': 'boolean', 'full_frame_masks': 'boolean',
    },
    Query.Response: {
        'success': 'boolean', 'message': 'string', 'result': 'ros_pgpt/GroundedObjectArray',
    },
    SetPrompts.Request: {'mode': 'uint8', 'prompts': 'sequence<string>'},
    SetPrompts.Response: {'success': 'boolean', 'message': 'string', 'prompts': 'sequence<string>'},
}


@pytest.mark.parametrize('cls', list(EXPECTED), ids=lambda c: c.__name__)
def test_fields_are_the_public_contract(cls):
    assert cls.get_fields_and_field_types() == EXPECTED[cls]


def _field_lines(path):
    """(line, previous non-blank line) for every field definition in a .msg/.srv."""
    pairs, prev = [], ''
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith('#') and stripped != '---':
            pairs.append((stripped, prev))
        prev = stripped
    return pairs


@pytest.mark.parametrize('name', ['msg/GroundedObject.msg', 'msg/GroundedObjectArray.msg', 'srv/Query.srv', 'srv/SetPrompts.srv'])
def test_every_field_is_documented(name):
    pairs = _field_lines(REPO_ROOT / name)
    assert pairs, f'{name} has no fields'
    for field, prev in pairs:
        # a field (type name) or a constant (type NAME=value)
        assert re.match(r'^[A-Za-z_/\[\]0-9]+ ([a-z_0-9]+|[A-Z_0-9]+=[0-9]+)$', field), \
            f'{name}: unexpected line {field!r}'
        assert prev.startswith('#'), f'{name}: field {field!r} has no comment line above it'


def mono8_mask(height=48, width=64):
    mask = np.zeros((height, width), np.uint8)
    mask[10:20, 5:40] = 255
    return mask


def filled_result():
    result = GroundedObjectArray()
    result.header.stamp.sec, result.header.stamp.nanosec = 1700000000, 123456789
    result.header.frame_id = 'camera_color_optical_frame'
    result.prompt = 'the red mug, left of the laptop — please'  # non-ASCII on purpose
    result.answer = 'There is one red mug.'
    result.visual_tokens = 256
    obj = GroundedObject(phrase='red mug', score=0.875, x_min=5.0, y_min=10.0, x_max=40.0, y_max=20.0)
    obj.mask.header = result.header
    obj.mask.height, obj.mask.width = 48, 64
    obj.mask.encoding, obj.mask.step = 'mono8', 64
    obj.mask.data = mono8_mask().tobytes()
    result.objects = [obj, GroundedObject(phrase='laptop', score=0.5, x_min=50.0, y_min=1.0,
                                          x_max=63.0, y_max=47.0)]
    for i, name in enumerate(TIMING_FIELDS):
        setattr(result, name, 0.25 + i)
    result.frame_cached = True
    result.rejected = True
    return result


def test_grounded_object_array_round_trip():
    result = filled_result()
    data = serialize_message(result)
    assert len(data) > 48 * 64  # the mask is in there
    back = deserialize_message(data, GroundedObjectArray)
    assert back == result
    assert back is not result
    assert back.prompt == 'the red mug, left of the laptop — please'
    assert [o.phrase for o in back.objects] == ['red mug', 'laptop']
    assert back.objects[0].score == pytest.approx(0.875)
    assert (back.objects[0].x_min, back.objects[0].y_max) == (5.0, 20.0)
    mask = np.frombuffer(bytes(back.objects[0].mask.data), np.uint8).reshape(48, 64)
    np.testing.assert_array_equal(mask, mono8_mask())
    assert back.objects[1].mask.width == 0 and len(back.objects[1].mask.data) == 0
    assert back.total_ms == pytest.approx(6.25) and back.frame_cached is True and back.rejected is True
    assert back.header.stamp.nanosec == 123456789


def test_round_trip_detects_a_change():
    """The equality used above really compares the payload."""
    result = filled_result()
    back = deserialize_message(serialize_message(result), GroundedObjectArray)
    back.objects[0].mask.data[100] = 7
    assert back != result


def test_query_request_and_response_round_trip():
    image_data = (np.arange(32 * 24 * 3) % 251).astype(np.uint8)
    req = Query.Request(prompt='find the door handle', visual_tokens=64, masks=True)
    req.image.height, req.image.width, req.image.step, req.image.encoding = 24, 32, 96, 'rgb8'
    req.image.data = image_data.tobytes()
    back = deserialize_message(serialize_message(req), Query.Request)
    assert back == req
    assert bytes(back.image.data) == image_data.tobytes()

    resp = Query.Response(success=False, message='no frame received on /camera/image_raw yet')
    resp.result = filled_result()
    back = deserialize_message(serialize_message(resp), Query.Response)
    assert back == resp and back.success is False and back.result.objects[0].phrase == 'red mug'


def test_defaults_mean_what_the_docs_say():
    req = Query.Request()
    assert req.prompt == '' and req.visual_tokens == 0 and req.masks is False
    assert req.image.width == 0 and len(req.image.data) == 0  # empty image = latest camera frame
    obj = GroundedObject()
    assert obj.mask.width == 0 and obj.mask.encoding == ''


def test_field_types_are_enforced_when_checking_is_on():
    # rosidl checks field values only with check_fields=True (or ROS_PYTHON_CHECK_FIELDS=1).
    with pytest.raises(AssertionError):
        GroundedObjectArray(visual_tokens=70000, check_fields=True)  # uint16
    with pytest.raises(AssertionError):
        GroundedObject(score='high', check_fields=True)
    GroundedObjectArray(visual_tokens=65535, check_fields=True)


def test_set_prompts_modes_are_the_node_s_order():
    from ros_pgpt.node.prompt_control import MODES

    assert [getattr(SetPrompts.Request, mode) for mode in MODES] == list(range(len(MODES)))
