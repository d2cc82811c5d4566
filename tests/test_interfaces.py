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
        'depth_status': 'uint8', 'depth_valid_fraction': 'float', 'depth': 'float',
        'centroid': 'geometry_msgs/Point', 'extent': 'geometry_msgs/Vector3', 'extent_center': 'geometry_msgs/Point',
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
        'depth': 'sensor_msgs/Image', 'camera_info': 'sensor_msgs/CameraInfo',
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


@pytest.mark.parametrize('name', ['msg/GroundedObject.msg', 'msg/GroundedObjectArray.msg', 'srv/Query.srv',
                                  'srv/SetPrompts.srv',
                                  *(f'interfaces/vision_msgs/msg/{n}.msg' for n in ('Detection2D', 'Detection3D',
                                                                                  'ObjectHypothesis'))])
def test_every_field_is_documented(name):
    pairs = _field_lines(REPO_ROOT / name)
    assert pairs, f'{name} has no fields'
    for field, prev in pairs:
        assert re.match(r'^[A-Za-z_/\[\]0-9]+ ([a-z_0-9]+|[A-Z_0-9]+=\S+)$', field), f'{name}: unexpected line {field!r}'
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


def test_depth_status_constants_match_the_geometry_module():
    from ros_pgpt.ros import depth

    for name in ('DEPTH_NONE', 'DEPTH_OK', 'DEPTH_MISSING', 'DEPTH_SPARSE'):
        assert getattr(GroundedObject, name) == getattr(depth, name)
    assert GroundedObject().depth_status == GroundedObject.DEPTH_NONE


# RIHS01 type hashes of ros-perception/vision_msgs 4.1.1, computed by rosidl from the upstream .msg files.
# The package built from interfaces/vision_msgs must produce exactly these, or its messages would not
# match real vision_msgs nodes over the wire.
VISION_MSGS_HASHES = {
    'BoundingBox2D': '008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f',
    'BoundingBox2DArray': '2464e82838009386d371b523211c21c91d74d313fcdd6788223c531d621cf691',
    'BoundingBox3D': 'bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698',
    'BoundingBox3DArray': 'a81938db9576b10c2eecd7c5a5da3eac496efd00221b25ed051dfbc81fb56da6',
    'Classification': 'f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143',
    'Detection2D': '0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea',
    'Detection2DArray': '214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968',
    'Detection3D': 'ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b',
    'Detection3DArray': '793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018',
    'LabelInfo': '3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783',
    'ObjectHypothesis': '51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90',
    'ObjectHypothesisWithPose': '41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc',
    'Point2D': 'eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247',
    'Pose2D': 'b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648',
    'VisionClass': '1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a',
    'VisionInfo': '95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284',
}


def test_vision_msgs_type_hashes_are_the_real_packages():
    import json
    import os
    import sys
    from pathlib import Path

    # the venv route installs into sys.prefix without setting AMENT_PREFIX_PATH; a ROS install sets it
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    share = next(Path(p) / 'share' / 'vision_msgs' / 'msg' for p in prefixes
                 if (Path(p) / 'share' / 'vision_msgs' / 'msg').is_dir())
    got = {path.stem: json.loads(path.read_text())['type_hashes'][0]['hash_string']
           for path in share.glob('*.json')}
    assert got == {name: f'RIHS01_{digest}' for name, digest in VISION_MSGS_HASHES.items()}


def test_vision_msgs_fields_and_round_trip():
    from vision_msgs.msg import Detection2D, Detection2DArray, Detection3DArray

    assert Detection2DArray.get_fields_and_field_types() == {
        'header': 'std_msgs/Header', 'detections': 'sequence<vision_msgs/Detection2D>'}
    assert Detection2D.get_fields_and_field_types() == {
        'header': 'std_msgs/Header', 'results': 'sequence<vision_msgs/ObjectHypothesisWithPose>',
        'bbox': 'vision_msgs/BoundingBox2D', 'id': 'string'}
    det = Detection2D(id='7')
    det.bbox.center.position.x, det.bbox.size_y = 12.5, 40.0
    array = Detection2DArray(detections=[det])
    array.header.frame_id = 'camera_color_optical_frame'
    assert deserialize_message(serialize_message(array), Detection2DArray) == array
    assert Detection3DArray.get_fields_and_field_types()['detections'] == 'sequence<vision_msgs/Detection3D>'


def test_field_types_are_enforced_when_checking_is_on():
    # rosidl checks field values only with check_fields=True (or ROS_PYTHON_CHECK_FIELDS=1).
    with pytest.raises(AssertionError):
        GroundedObjectArray(visual_tokens=70000, check_fields=True)  # uint16
    with pytest.raises(AssertionError):
        GroundedObject(score='high', check_fields=True)
    GroundedObjectArray(visual_tokens=65535, check_fields=True)


def test_set_prompts_modes_are_the_node_s_order():
    from ros_pgpt.ros.prompt_control import MODES

    assert [getattr(SetPrompts.Request, mode) for mode in MODES] == list(range(len(MODES)))
