"""3D from a depth image: decoding, intrinsics and per-object statistics (numpy only, no ROS import).

Conventions (REP-103/105, and those of image_pipeline's depth_image_proc):

* depth images are **registered** to the colour camera: the same optical
  centre and image plane (e.g. RealSense ``aligned_depth_to_color``), possibly
  at another resolution of the same aspect ratio;
* ``16UC1`` holds millimetres, ``32FC1`` metres; 0, NaN and +-inf mean "no
  reading" and are ignored;
* the 3D frame is the camera's **optical** frame: x right, y down, z forward
  (along the optical axis), metres; a pixel (u, v) at depth z back-projects to
  ``((u - cx) z / fx, (v - cy) z / fy, z)``, pixel centres at integers;
* intrinsics come from ``sensor_msgs/CameraInfo.k`` at ``width x height`` and
  are scaled to the depth image's resolution; distortion (``d``) is not applied
  (use rectified, registered depth, as depth_image_proc does).

The ``*_msg`` readers take anything shaped like the ROS messages (duck
typing), so they run on rclpy messages and in plain unit tests alike; the two
builders (``depth_to_msg``, ``camera_info_msg``) import sensor_msgs when called.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEPTH_ENCODINGS = ('16UC1', '32FC1')  # millimetres, metres
ASPECT_TOLERANCE = 0.01  # relative difference of width/height ratios still taken as the same aspect

# GroundedObject.depth_status values (msg/GroundedObject.msg says the same)
DEPTH_NONE, DEPTH_OK, DEPTH_MISSING, DEPTH_SPARSE = 0, 1, 2, 3


class DepthError(ValueError):
    """A depth image or camera_info that cannot be used; the message says why."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics for images of ``width x height`` pixels."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """The same camera at another resolution of the same aspect (pixel centres at integers).

        Raises DepthError when the aspect ratios differ: a resize cannot turn one into the other.
        """
        if (width, height) == (self.width, self.height):
            return self
        check_same_aspect((self.width, self.height), (width, height), 'camera_info', 'depth image')
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          width, height)


def check_same_aspect(size_a, size_b, name_a: str, name_b: str) -> None:
    (wa, ha), (wb, hb) = size_a, size_b
    ra, rb = wa / ha, wb / hb
    if abs(ra - rb) > ASPECT_TOLERANCE * max(ra, rb):
        raise DepthError(f'{name_a} is {wa}x{ha} (aspect {ra:.3f}) but {name_b} is {wb}x{hb} (aspect {rb:.3f}): '
                         f'depth must be registered to the colour camera (same field of view; e.g. the '
                         f'aligned_depth_to_color topic); only a resize to the same aspect ratio is handled')


def intrinsics_from_camera_info(msg) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics; raises DepthError for uncalibrated or cropped/binned info."""
    if msg.width <= 0 or msg.height <= 0:
        raise DepthError(f'camera_info has no image size ({msg.width}x{msg.height})')
    k = [float(v) for v in msg.k]
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, cx, cy]).all()):
        raise DepthError(f'camera_info k has no valid focal lengths (fx={fx:g}, fy={fy:g}): is the camera '
                         f'calibrated?')
    if max(msg.binning_x, msg.binning_y) > 1 or msg.roi.width or msg.roi.height:
        raise DepthError('camera_info uses binning or a region of interest; give the full-resolution '
                         'calibration of the depth or colour image instead')
    return Intrinsics(fx, fy, cx, cy, int(msg.width), int(msg.height))


def depth_msg_to_metres(msg) -> np.ndarray:
    """sensor_msgs/Image 16UC1 (mm) or 32FC1 (m) -> HxW float32 metres, NaN where there is no reading."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise DepthError(f'unsupported depth encoding {msg.encoding!r}; supported: 16UC1 (millimetres), '
                         f'32FC1 (metres)')
    if msg.width <= 0 or msg.height <= 0:
        raise DepthError(f'depth image has zero size ({msg.width}x{msg.height})')
    itemsize = 2 if msg.encoding == '16UC1' else 4
    if msg.step < msg.width * itemsize:
        raise DepthError(f'depth image step {msg.step} is smaller than width*{itemsize} = '
                         f'{msg.width * itemsize} for {msg.encoding}')
    data = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview)) else msg.data
    if len(data) != msg.step * msg.height:
        raise DepthError(f'depth image data has {len(data)} bytes but step*height = {msg.step}*{msg.height} = '
                         f'{msg.step * msg.height}')
    order = '>' if msg.is_bigendian else '<'
    dtype = np.dtype(f'{order}u2' if msg.encoding == '16UC1' else f'{order}f4')
    rows = np.frombuffer(data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * itemsize]
    raw = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)
    metres = raw.astype(np.float32) * (np.float32(0.001) if msg.encoding == '16UC1' else np.float32(1.0))
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


def read_depth_file(path) -> np.ndarray:
    """A depth file -> HxW uint16 millimetres (a 16-bit PNG or TIFF, or a .npy of uint16) or float32 metres
    (a .npy of floats); the form ``depth_to_msg`` sends as 16UC1 or 32FC1."""
    if str(path).endswith('.npy'):
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:  # missing, or not a plain .npy array
            raise DepthError(f'cannot read depth file {path}: {error}') from error
        if depth.dtype.kind == 'f':
            depth = depth.astype(np.float32)
    else:
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise DepthError(f'cannot read depth file {path}')
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.float32):
        raise DepthError(f'{path}: a depth image is one channel of uint16 millimetres (16-bit PNG) or float '
                         f'metres (.npy), not {depth.dtype} of shape {depth.shape}')
    return depth


def depth_to_msg(depth: np.ndarray, header=None):
    """HxW uint16 millimetres or float32 metres -> sensor_msgs/Image 16UC1 or 32FC1."""
    from sensor_msgs.msg import Image

    depth = np.ascontiguousarray(depth, depth.dtype.newbyteorder('<'))
    encoding = {np.dtype('<u2'): '16UC1', np.dtype('<f4'): '32FC1'}.get(depth.dtype)
    if encoding is None:
        raise DepthError(f'a depth image is uint16 millimetres or float32 metres, not {depth.dtype}')
    msg = Image(encoding=encoding, height=depth.shape[0], width=depth.shape[1], is_bigendian=0,
                step=depth.shape[1] * depth.itemsize)
    msg.data = depth.tobytes()
    if header is not None:
        msg.header = header
    return msg


def camera_info_msg(intrinsics: Intrinsics, header=None):
    """Pinhole intrinsics -> sensor_msgs/CameraInfo (k and p; no distortion: rectified images)."""
    from sensor_msgs.msg import CameraInfo

    k = intrinsics
    msg = CameraInfo(width=k.width, height=k.height, distortion_model='plumb_bob')
    msg.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    msg.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    if header is not None:
        msg.header = header
    return msg


@dataclass(frozen=True)
class DepthFrame:
    """A depth image in metres (NaN = no reading) with intrinsics at its own resolution."""
    metres: np.ndarray
    intrinsics: Intrinsics

    @classmethod
    def from_msgs(cls, depth_msg, camera_info_msg, colour_size) -> DepthFrame:
        """Decode and check a depth image against its camera_info and the colour image's (width, height)."""
        metres = depth_msg_to_metres(depth_msg)
        h, w = metres.shape
        check_same_aspect(colour_size, (w, h), 'colour image', 'depth image')
        return cls(metres, intrinsics_from_camera_info(camera_info_msg).scaled_to(w, h))


@dataclass(frozen=True)
class Object3D:
    """Depth statistics of one object (metres, optical frame)."""
    status: int  # DEPTH_OK, DEPTH_MISSING or DEPTH_SPARSE
    valid_fraction: float  # mask pixels with a depth reading / mask pixels
    depth: float  # median depth of the valid pixels (NaN when missing)
    centroid: tuple  # (x, y, z): per-axis median of the back-projected inlier pixels
    extent: tuple  # (x, y, z) sizes: percentile range of the inlier points
    center: tuple  # (x, y, z): middle of that percentile box


NAN3 = (float('nan'),) * 3


def mask_to_depth_grid(mask: np.ndarray, shape) -> np.ndarray:
    """A colour-resolution bool mask resampled (nearest) to the depth image's (h, w)."""
    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def object_3d(depth: DepthFrame, mask: np.ndarray, *, min_valid_fraction: float = 0.2,
              extent_percentile: float = 5.0, outlier_mad: float = 3.0, outlier_floor: float = 0.02) -> Object3D:
    """3D statistics of the object under ``mask`` (bool, colour or depth resolution).

    Pixels without a reading are ignored. Inliers are the valid pixels whose
    depth lies within ``max(outlier_mad * 1.4826 * MAD, outlier_floor * median)``
    of the median: a mask that spills over the object's edge would otherwise
    stretch the extent to the background behind it. ``extent`` spans the
    ``extent_percentile``..``100 - extent_percentile`` percentiles of the inliers
    on each axis. Fewer than ``min_valid_fraction`` valid pixels: DEPTH_SPARSE
    (values still computed); none: DEPTH_MISSING (values NaN).
    """
    grid = mask_to_depth_grid(np.asarray(mask, bool), depth.metres.shape)
    vs, us = np.nonzero(grid)
    if us.size == 0:
        return Object3D(DEPTH_MISSING, 0.0, float('nan'), NAN3, NAN3, NAN3)
    z = depth.metres[vs, us]
    valid = np.isfinite(z)
    fraction = float(valid.mean())
    if not valid.any():
        return Object3D(DEPTH_MISSING, 0.0, float('nan'), NAN3, NAN3, NAN3)
    us, vs, z = us[valid], vs[valid], z[valid]
    median = float(np.median(z))
    mad = float(np.median(np.abs(z - median)))
    keep = np.abs(z - median) <= max(outlier_mad * 1.4826 * mad, outlier_floor * median)
    k = depth.intrinsics
    zk = z[keep].astype(np.float64)
    points = np.stack([(us[keep] - k.cx) * zk / k.fx, (vs[keep] - k.cy) * zk / k.fy, zk], axis=1)
    low, high = np.percentile(points, [extent_percentile, 100.0 - extent_percentile], axis=0)
    status = DEPTH_OK if fraction >= min_valid_fraction else DEPTH_SPARSE
    return Object3D(status, fraction, median, tuple(float(v) for v in np.median(points, axis=0)),
                    tuple(float(v) for v in high - low), tuple(float(v) for v in 0.5 * (low + high)))
