"""The perception node's parameters: names, defaults, descriptors, validation.

Two classes of parameters:

* **load-time** (``checkpoint``, ``backend``, ``input``, ``qos_reliability``,
  ``qos_depth``, ``queue_size``, ``autostart``, the thresholds the model is
  loaded with, and the depth topics and their QoS): used at configure/activate;
  changing them is refused while the node is configured (deactivate + cleanup
  first, then configure again);
* **run-time** (everything else): validated on change and used from the
  next query/frame on.
"""
from __future__ import annotations

from dataclasses import dataclass

from ros_pgpt.data.prompts import MAX_PROMPT_CHARS
from ros_pgpt.inference.decoding import DecodingRules
from ros_pgpt.ros.conversions import DEFAULT_MAX_IMAGE_PIXELS
from ros_pgpt.data.wording import UnknownWords, known_prompt

INPUTS = ('raw', 'compressed')
RELIABILITIES = ('reliable', 'best_effort')
RULES = DecodingRules()  # the decoding parameters' defaults


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    description: str
    kind: str  # bool | int | double | string | string_array
    low: float | None = None
    high: float | None = None
    step: float | None = None
    load_time: bool = False
    choices: tuple = ()


PARAMS = (
    Param('checkpoint', '', 'model checkpoint directory; empty = $ROS_PGPT_CHECKPOINT or the shipped '
          'ros_pgpt/checkpoints/default', 'string', load_time=True),
    Param('backend', 'auto', 'inference backend (ros_pgpt.inference.backends.BACKENDS); auto picks the best available',
          'string', load_time=True),
    Param('input', 'raw', 'camera input: raw = sensor_msgs/Image on "image"; compressed = '
          'sensor_msgs/CompressedImage (jpeg/png) on "image/compressed"', 'string', load_time=True,
          choices=INPUTS),
    Param('qos_reliability', 'reliable', 'camera subscription reliability: reliable (default: best_effort '
          'loses large frames over Fast DDS) or best_effort', 'string', load_time=True, choices=RELIABILITIES),
    Param('qos_depth', 2, 'camera subscription queue depth (keep last N frames)', 'int', 1, 100, 1,
          load_time=True),
    Param('queue_size', 4, 'queries waiting for the inference worker before the node answers "busy"',
          'int', 1, 64, 1, load_time=True),
    Param('autostart', True, 'configure and activate on start (there is no ros2 lifecycle CLI here)',
          'bool', load_time=True),
    Param('visual_tokens', 0, 'default visual-token count (0 = the model maximum); rounded down to a square',
          'int', 0, 1024, 1),
    Param('masks', True, 'compute masks for standing prompts (queries ask per request)', 'bool'),
    Param('score_threshold', 0.0, 'drop objects scoring below this (0..1)', 'double', 0.0, 1.0),
    Param('match_threshold', RULES.match_threshold, 'models with a match head: a first object it scores below '
          'this is refused and the answer is "none" (0 = keep every object the LLM names)', 'double', 0.0, 1.0,
          load_time=True),
    Param('next_object_threshold', RULES.next_object_threshold, 'after the first object, decode another '
          'whenever its token\'s probability reaches this, though ending the answer is likelier (plural answers '
          'stop early; 0.5 or more = plain greedy decoding)', 'double', 0.0, 1.0, load_time=True),
    Param('first_object_threshold', RULES.first_object_threshold, 'models with a match head: where the LLM '
          'answers "none" but an object token is at least this likely, decode the object and let the match head '
          'decide (1 = the LLM\'s "none" stands)', 'double', 0.0, 1.0, load_time=True),
    Param('refine_masks', RULES.refine_masks, 'snap mask edges to the image\'s colour edges (guided filter, '
          '~2 ms an object on a 2-core CPU; off = the mask head\'s stride-4 edges)', 'bool', load_time=True),
    Param('max_image_age', 2.0, 'refuse latest-frame queries when the newest frame was received longer '
          'ago than this many seconds (0 = no limit)', 'double', 0.0, 86400.0),
    Param('frame_reuse_s', 0.2, 'a latest-frame query answers on the frame the model already holds while that '
          'frame arrived at most this many seconds ago (it skips the vision encoder: ~12 '
          'instead of ~58 ms on a 2-core CPU, and standing prompts keep their rate under a query flood); '
          '0 = always the newest frame. The answer\'s header stamp names the frame used', 'double', 0.0, 10.0),
    Param('max_image_pixels', DEFAULT_MAX_IMAGE_PIXELS, 'largest accepted image, width*height pixels '
          '(also at most 16384 per side)', 'int', 64, 16384 * 16384, 1),
    Param('max_prompt_chars', MAX_PROMPT_CHARS, f'longest accepted prompt in characters (the model\'s limit '
          f'is {MAX_PROMPT_CHARS})', 'int', 1, MAX_PROMPT_CHARS, 1),
    Param('standing_prompts', [], 'prompts grounded on each new frame (at most `rate` Hz), all of a frame in one '
          'message on ~/detections; also set through ~/set_prompts and ~/prompts', 'string_array'),
    Param('rate', 1.0, 'most standing-prompt runs per second (0 = every frame the worker can take)',
          'double', 0.0, 100.0),
    Param('full_frame_masks', False, 'masks of the source image\'s size instead of masks cropped to each '
          'object\'s box (GroundedObject.mask_x_offset/mask_y_offset place a crop); a Query may ask for full frames',
          'bool'),
    Param('tracking', True, 'give standing-prompt objects ids that stay the same across frames '
          '(GroundedObject.track_id; 0 when off)', 'bool'),
    Param('track_iou', 0.3, 'tracking: least overlap (mask IoU, else box IoU, at the predicted place) for an '
          'object to keep a track\'s id', 'double', 0.0, 1.0),
    Param('track_memory', 3, 'tracking: standing runs a track survives unmatched (an object missed or hidden '
          'this many runs gets its id back)', 'int', 0, 100, 1),
    Param('fault_log_period', 5.0, 'seconds between two log lines of the same kind of bad input '
          '(throttling)', 'double', 0.0, 3600.0),
    # 3D from depth (ros_pgpt/ros/outputs.py, ros_pgpt/ros/depth.py)
    Param('depth_topic', '', 'depth image registered to the camera (sensor_msgs/Image 16UC1 millimetres or '
          '32FC1 metres), paired with camera frames by stamp; empty = no depth subscription', 'string',
          load_time=True),
    Param('camera_info_topic', '', 'sensor_msgs/CameraInfo of the depth (or colour) camera; empty = '
          '"camera_info" beside depth_topic (image_transport\'s convention)', 'string', load_time=True),
    Param('depth_qos_reliability', 'reliable', 'depth and camera_info subscription reliability', 'string',
          load_time=True, choices=RELIABILITIES),
    Param('depth_qos_depth', 5, 'depth and camera_info subscription queue depth', 'int', 1, 100, 1,
          load_time=True),
    Param('depth_sync_tolerance', 0.02, 'largest |depth stamp - frame stamp| in seconds for a depth image to '
          'pair with a camera frame', 'double', 0.0, 10.0),
    Param('min_depth_valid_fraction', 0.2, 'objects with fewer mask pixels holding a depth reading are flagged '
          'DEPTH_SPARSE', 'double', 0.0, 1.0),
    Param('extent_percentile', 5.0, 'the 3D extent spans this percentile to 100 minus it of the object\'s '
          'points on each axis', 'double', 0.0, 49.0),
)
BY_NAME = {p.name: p for p in PARAMS}


def descriptor(param: Param):
    from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                    ParameterType)

    types = {'bool': ParameterType.PARAMETER_BOOL, 'int': ParameterType.PARAMETER_INTEGER,
             'double': ParameterType.PARAMETER_DOUBLE, 'string': ParameterType.PARAMETER_STRING,
             'string_array': ParameterType.PARAMETER_STRING_ARRAY}
    text = param.description
    if param.choices:
        text += f' (one of: {", ".join(param.choices)})'
    if param.load_time:
        text += ' [load-time: change only while unconfigured]'
    d = ParameterDescriptor(name=param.name, type=types[param.kind], description=text)
    if param.kind == 'int' and param.low is not None:
        d.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high),
                                        step=int(param.step or 1))]
    elif param.kind == 'double' and param.low is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(param.low), to_value=float(param.high),
                                                     step=0.0)]
    if param.choices:
        d.additional_constraints = 'one of: ' + ', '.join(param.choices)
    return d


def declare_all(node) -> None:
    """Declare every parameter on ``node`` (overrides from --ros-args apply)."""
    from rclpy.parameter import Parameter

    for p in PARAMS:
        if p.kind == 'string_array':
            # An empty list would be typed as a byte array; declare the type, then default it.
            node.declare_parameter(p.name, Parameter.Type.STRING_ARRAY, descriptor(p))
            if node.get_parameter_or(p.name, None) is None or _uninitialized(node, p.name):
                node.set_parameters([Parameter(p.name, Parameter.Type.STRING_ARRAY, list(p.default))])
        else:
            node.declare_parameter(p.name, p.default, descriptor(p))


def _uninitialized(node, name) -> bool:
    from rclpy.exceptions import ParameterUninitializedException

    try:
        node.get_parameter(name)
        return False
    except ParameterUninitializedException:
        return True


def validate(name: str, value, *, configured: bool, max_tokens: int | None, max_prompt_chars: int) -> str | None:
    """Why ``name := value`` is refused, or None when it is fine. Ranges are checked by rclpy."""
    from ros_pgpt.inference.backends import BACKENDS

    param = BY_NAME.get(name)
    if param is None:
        return None
    if param.load_time and configured:
        return f'{name} is a load-time parameter: deactivate and clean up the node before changing it'
    if param.choices and value not in param.choices:
        return f'{name} must be one of {", ".join(param.choices)}, not {value!r}'
    if name == 'backend' and value not in BACKENDS:
        return f'backend must be one of {", ".join(BACKENDS)}, not {value!r}'
    if name == 'visual_tokens' and max_tokens is not None and value > max_tokens:
        return f'visual_tokens={value} exceeds the model\'s maximum {max_tokens}'
    if name == 'standing_prompts':
        if len(set(value)) < len(value):
            return f'standing_prompts lists a prompt twice: {list(value)}'
        for prompt in value:
            if not prompt.strip():
                return 'standing_prompts must not contain empty prompts'
            if '\n' in prompt or '\r' in prompt:
                return (f'standing prompt {prompt[:30]!r} has a line break; standing results and ~/prompts '
                        f'hold one prompt per line')
            if len(prompt) > max_prompt_chars:
                return (f'standing prompt {prompt[:30]!r}... has {len(prompt)} characters; the limit is '
                        f'{max_prompt_chars} (max_prompt_chars)')
            try:
                known_prompt(prompt)
            except UnknownWords as exc:
                return f'standing prompt {prompt!r}: {exc}'
    return None
