"""Conversions between ROS messages, numpy images and model results, plus overlays.

No cv_bridge on PyPI, so this module does what the node needs by hand:

* ``image_msg_to_rgb(msg)``: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8,
  mono8) -> HxWx3 uint8 RGB, validating encoding, size, ``step`` and the
  ``data`` length; raises :class:`ImageError` (a ``ValueError`` with a
  ``kind``) that says what is wrong;
* ``compressed_msg_to_rgb(msg)``: ``sensor_msgs/CompressedImage`` (jpeg/png);
* ``rgb_to_image_msg`` / ``mask_to_image_msg``: the other way (``data`` is
  set from ``bytes``: ~500x faster than from an ndarray);
* ``result_to_msg``: a ``GroundingResult`` -> ``ros_pgpt/GroundedObjectArray``
  (masks cropped to each object's box unless full-frame masks are asked
  for); ``standing_msg`` joins the results of every standing prompt on one
  frame into one message;
* ``draw_overlay``: boxes, masks and phrases drawn on an image (cv2).

rclpy message classes are imported lazily so importing this module is cheap.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ros_pgpt.data.phrases import object_phrase, readable_answer

# encoding -> (channels, conversion code to RGB or None)
ENCODINGS = {
    'rgb8': (3, None),
    'bgr8': (3, cv2.COLOR_BGR2RGB),
    'rgba8': (4, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, cv2.COLOR_BGRA2RGB),
    'mono8': (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS = tuple(ENCODINGS)
COMPRESSED_FORMATS = ('jpeg', 'png')

MIN_SIDE = 8  # the model needs at least 8x8 pixels
MAX_SIDE = 16384  # per side
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096  # 16.8 MP; the node's max_image_pixels parameter


class ImageError(ValueError):
    """A frame that cannot be used. ``kind`` names the fault class (for throttled logs)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _buffer(data):
    """A zero-copy view of a message's uint8[] field (bytes, array.array or a list)."""
    try:
        return memoryview(data).cast('B')
    except TypeError:
        return bytes(data)


def check_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Raise ImageError unless MIN_SIDE <= sides <= MAX_SIDE and width*height <= max_pixels."""
    if width <= 0 or height <= 0:
        raise ImageError('size', f'image has zero size ({width}x{height})')
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError('size', f'image is too small ({width}x{height}); need at least {MIN_SIDE}x{MIN_SIDE} pixels')
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise ImageError('size', f'image is too large ({width}x{height} = {width * height / 1e6:.1f} MP); '
                                 f'the limit is {MAX_SIDE} px per side and {max_pixels / 1e6:.1f} MP '
                                 f'(parameter max_image_pixels)')


def is_empty_image(msg) -> bool:
    """True for a default-constructed Image (the Query's "use the latest frame")."""
    return msg.width == 0 and msg.height == 0 and len(msg.data) == 0


def image_msg_to_rgb(msg, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB (a new array). Raises ImageError."""
    encoding = msg.encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise ImageError('encoding', f'unsupported image encoding {msg.encoding!r}; '
                                     f'supported: {", ".join(SUPPORTED_ENCODINGS)}')
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    check_size(width, height, max_pixels)
    channels, code = ENCODINGS[encoding]
    row = width * channels
    if step < row:
        raise ImageError('data', f'image step {step} is smaller than width*channels = {width}*{channels} = {row} '
                                 f'for {encoding}')
    size = len(msg.data)
    if size != step * height:
        raise ImageError('data', f'image data has {size} bytes but step*height = {step}*{height} = '
                                 f'{step * height} ({width}x{height} {encoding})')
    arr = np.frombuffer(_buffer(msg.data), dtype=np.uint8).reshape(height, step)[:, :row].reshape(height, width, channels)
    if code is None:
        return arr.copy()
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(arr[:, :, 0]), code)
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


def compressed_msg_to_rgb(msg, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> HxWx3 uint8 RGB. Raises ImageError."""
    fmt = msg.format.strip().lower()
    # image_transport writes e.g. "rgb8; jpeg compressed bgr8"; accept any mention of jpeg/png.
    if fmt and not any(word in fmt for word in ('jpeg', 'jpg', 'png')):
        raise ImageError('encoding', f'unsupported compressed format {msg.format!r}; supported: jpeg, png')
    buf = np.frombuffer(_buffer(msg.data), np.uint8)
    if buf.size == 0:
        raise ImageError('decode', 'compressed image has no data')
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError('decode', f'could not decode the compressed image ({msg.format or "no format"}, '
                                   f'{buf.size} bytes): corrupt or not jpeg/png')
    check_size(bgr.shape[1], bgr.shape[0], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_key(msg) -> tuple:
    """Frame-cache key of an image given inline: header plus a content checksum."""
    stamp = msg.header.stamp
    return ('inline', stamp.sec, stamp.nanosec, msg.header.frame_id, msg.width, msg.height,
            msg.encoding, zlib.crc32(_buffer(msg.data)))


def rgb_to_image_msg(array: np.ndarray, encoding: str = 'rgb8', header=None):
    """HxWx3 (or HxW for mono8) uint8 -> sensor_msgs/Image with the given encoding."""
    from sensor_msgs.msg import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f'need a uint8 array, got {array.dtype}')
    if encoding == 'mono8' and array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
    elif encoding in ('bgr8', 'rgba8', 'bgra8'):
        array = cv2.cvtColor(array, {'bgr8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGB2RGBA,
                                     'bgra8': cv2.COLOR_RGB2BGRA}[encoding])
    elif encoding != 'rgb8' and encoding != 'mono8':
        raise ValueError(f'cannot write encoding {encoding!r}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    msg.step = msg.width * channels
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def rgb_to_compressed_msg(array: np.ndarray, fmt: str = 'jpeg', header=None, quality: int = 90):
    """HxWx3 RGB -> sensor_msgs/CompressedImage (jpeg or png)."""
    from sensor_msgs.msg import CompressedImage

    ext = {'jpeg': '.jpg', 'jpg': '.jpg', 'png': '.png'}[fmt]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == '.jpg' else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.asarray(array), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f'cv2 could not encode {fmt}')
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = 'jpeg' if ext == '.jpg' else 'png'
    msg.data = buf.tobytes()
    return msg


def mask_to_image_msg(mask: np.ndarray, header=None):
    """HxW bool -> mono8 sensor_msgs/Image, 255 on the object."""
    return rgb_to_image_msg(np.asarray(mask, bool).astype(np.uint8) * 255, 'mono8', header)


def mask_from_image_msg(msg) -> np.ndarray | None:
    """mono8 mask Image -> bool array of its size (None when the mask is empty).

    A GroundedObject's mask may be a crop: ``mask_in_frame`` places it in the source image.
    """
    if msg.width == 0 or msg.height == 0:
        return None
    arr = np.frombuffer(_buffer(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width]
    return arr > 127


def mask_in_frame(obj, width: int, height: int) -> np.ndarray | None:
    """A GroundedObject's mask (cropped or full-frame) as a ``height`` x ``width`` bool image; None without mask."""
    crop = mask_from_image_msg(obj.mask)
    if crop is None:
        return None
    return paste_mask(crop, (obj.mask_x_offset, obj.mask_y_offset), width, height)


def paste_mask(crop: np.ndarray, offset, width: int, height: int) -> np.ndarray:
    """A mask crop placed at ``offset`` (x, y) in a ``height`` x ``width`` image (clipped to it)."""
    full = np.zeros((height, width), bool)
    x, y = int(offset[0]), int(offset[1])
    h, w = crop.shape
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 > x and y1 > y:
        full[y:y1, x:x1] = crop[:y1 - y, :x1 - x]
    return full


def crop_mask(mask: np.ndarray, box) -> tuple[np.ndarray, int, int]:
    """(crop, x, y): ``mask`` (HxW) cut to ``box`` widened to every mask pixel outside it; at least 1x1 px."""
    height, width = mask.shape
    x0 = min(max(int(np.floor(box[0])), 0), width - 1)
    y0 = min(max(int(np.floor(box[1])), 0), height - 1)
    x1 = max(min(int(np.ceil(box[2])), width), x0 + 1)
    y1 = max(min(int(np.ceil(box[3])), height), y0 + 1)
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if cols.size:
        x0, x1 = min(x0, int(cols[0])), max(x1, int(cols[-1]) + 1)
        y0, y1 = min(y0, int(rows[0])), max(y1, int(rows[-1]) + 1)
    return mask[y0:y1, x0:x1], x0, y0


@dataclass
class Detection:
    """One object as drawn/compared: phrase, score, box (x0, y0, x1, y1) source px, mask or None.

    ``mask`` lies at ``mask_offset`` (x, y) in the source image: a crop, or the full frame at (0, 0).
    """
    phrase: str
    score: float
    box: tuple
    mask: np.ndarray | None = None
    mask_offset: tuple = (0, 0)
    track_id: int = 0

    @property
    def label(self) -> str:
        return f'{self.phrase}{f" #{self.track_id}" if self.track_id else ""} {self.score:.2f}'


def boxes_from_flat(values) -> np.ndarray:
    """A Query request's flat ``boxes`` (x_min, y_min, x_max, y_max per box, source pixels) -> (K, 4).

    Raises ValueError with the reason when they cannot be boxes.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size % 4:
        raise ValueError(f'boxes has {flat.size} values; it needs four per box (x_min, y_min, x_max, y_max)')
    boxes = flat.reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError('boxes holds a NaN or infinite value')
    return boxes  # the Predictor checks each box against the image


TIMED_STAGES = ('preprocess', 'vision', 'prefill', 'decode', 'perception', 'postprocess', 'total')


def result_to_msg(result, header, *, score_threshold: float = 0.0, masks: bool = True,
                  full_frame_masks: bool = False, extra_ms: dict | None = None):
    """GroundingResult -> ros_pgpt/GroundedObjectArray with ``header`` copied from the source image.

    Objects scoring below ``score_threshold`` are dropped. Masks are cropped to
    each object's box (``crop_mask``) unless ``full_frame_masks``. ``extra_ms``
    adds node-side milliseconds to stages (e.g. image conversion to preprocess)
    and may set ``total`` (end to end, queue wait included).
    """
    from ros_pgpt.msg import GroundedObject, GroundedObjectArray

    out = GroundedObjectArray()
    out.header = header
    out.prompt = result.prompt
    out.visual_tokens = int(result.visual_tokens)
    out.frame_cached = bool(result.frame_cached)
    out.rejected = bool(result.rejected)
    timings = dict(result.timings)
    for stage, ms in (extra_ms or {}).items():
        if stage != 'total':
            timings[stage] = timings.get(stage, 0.0) + ms
    timings['total'] = (extra_ms or {}).get('total', timings.get('total', 0.0))
    for stage in TIMED_STAGES:
        setattr(out, f'{stage}_ms', float(timings.get(stage, 0.0)))
    if result.frame_cached:
        out.vision_ms = 0.0
    objects = []
    for obj in result.objects:
        if obj.score < score_threshold:
            continue
        msg = GroundedObject()
        msg.phrase = obj.phrase
        msg.prompt = result.prompt
        msg.score = float(obj.score)
        msg.x_min, msg.y_min, msg.x_max, msg.y_max = (float(v) for v in obj.box)
        if masks and obj.mask is not None:
            mask, x, y = (obj.mask, 0, 0) if full_frame_masks else crop_mask(obj.mask, obj.box)
            msg.mask = mask_to_image_msg(mask, header)
            msg.mask_x_offset, msg.mask_y_offset = x, y
        objects.append(msg)
    out.objects = objects
    out.answer = readable_answer(result.answer, object_phrase(result.prompt), len(objects))
    return out


def standing_msg(results, header):
    """The GroundedObjectArrays of every standing prompt on one frame as one message (``standing`` true).

    prompt and answer hold one line per prompt; objects follow prompt after
    prompt; timings are summed; frame_cached is the first prompt's; rejected is
    true when any prompt's object was refused.
    """
    from ros_pgpt.msg import GroundedObjectArray

    out = GroundedObjectArray(standing=True)
    out.header = header
    out.prompt = '\n'.join(r.prompt for r in results)
    out.answer = '\n'.join(r.answer for r in results)
    out.objects = [obj for r in results for obj in r.objects]
    if results:
        out.visual_tokens = results[0].visual_tokens
        out.frame_cached = results[0].frame_cached
    out.rejected = any(r.rejected for r in results)
    for stage in TIMED_STAGES:
        setattr(out, f'{stage}_ms', float(sum(getattr(r, f'{stage}_ms') for r in results)))
    return out


def detections_from_msg(msg) -> list[Detection]:
    """GroundedObjectArray -> list of Detection (masks decoded when present, at their offsets)."""
    return [Detection(o.phrase, float(o.score), (o.x_min, o.y_min, o.x_max, o.y_max), mask_from_image_msg(o.mask),
                      (o.mask_x_offset, o.mask_y_offset), o.track_id)
            for o in msg.objects]


def detections_from_result(result, score_threshold: float = 0.0) -> list[Detection]:
    return [Detection(o.phrase, float(o.score), tuple(o.box), o.mask)
            for o in result.objects if o.score >= score_threshold]


_PALETTE = [(255, 64, 64), (64, 200, 255), (255, 220, 0), (200, 80, 255), (0, 230, 120),
            (255, 140, 0), (255, 255, 255), (0, 120, 255)]


def draw_overlay(image_rgb: np.ndarray, detections, title: str | None = None) -> np.ndarray:
    """A copy of ``image_rgb`` with masks (tinted), boxes and "phrase score" labels drawn."""
    out = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    scale = max(0.4, min(width, height) / 900)
    thick = max(1, round(min(width, height) / 320))
    for i, det in enumerate(detections):
        colour = _PALETTE[i % len(_PALETTE)]
        sel = None if det.mask is None else paste_mask(det.mask.astype(bool), det.mask_offset, width, height)
        if sel is not None and sel.any():
            tint = np.array(colour, np.float32)
            out[sel] = (0.5 * out[sel].astype(np.float32) + 0.5 * tint).astype(np.uint8)
            contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, colour, 1)
        x0, y0, x1, y1 = (int(round(v)) for v in det.box)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thick)
        label = det.label
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y0 - 4 if y0 - th - 6 >= 0 else min(height - 2, y1 + th + 4)
        cv2.rectangle(out, (x0, ty - th - 3), (x0 + tw + 4, ty + base - 1), (0, 0, 0), -1)
        cv2.putText(out, label, (x0 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    if title:
        (tw, th), base = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (0, 0), (min(width, tw + 8), th + base + 6), (0, 0, 0), -1)
        cv2.putText(out, title, (4, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def read_image_file(path) -> np.ndarray:
    """An image file (png, jpg, ...) -> HxWx3 RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image file {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image_file(path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)):
        raise OSError(f'cannot write image file {path}')
