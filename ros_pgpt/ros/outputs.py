"""The perception node's depth input and its standard outputs (vision_msgs, RViz markers).

``NodeOutputs`` is owned by the PerceptionNode and called from a few places:

    configure   NodeOutputs(node): publishers ~/detections_2d, ~/detections_3d, ~/markers
    activate    .subscribe(): depth_topic + camera_info_topic, when depth_topic is set
    per result  .depth_for_frame(header, size) / .depth_for_query(request, size) -> DepthFrame or None
                .add_3d(msg, result, depth): fill GroundedObject's 3D fields
                .publish(msg, depth): Detection2DArray, Detection3DArray, MarkerArray

Depth images are kept in a short buffer and paired with a camera frame by
stamp (nearest within ``depth_sync_tolerance``); camera_info is the latest
received. Every output is built only while someone subscribes to it
(image_pipeline's lazy habit). The geometry is in ros_pgpt/ros/depth.py.
"""
from __future__ import annotations

import collections
import math
import threading
import time

from ros_pgpt.ros import depth as D
from ros_pgpt.ros import conversions

DEPTH_BUFFER = 30  # depth images kept for pairing (1 s at 30 Hz)
DEPTH_WAIT_S = 0.25  # how long a frame waits for a depth image stamped at or after it that has not arrived yet
DEPTH_STREAM_GAP_S = 1.0  # no depth image for this long: the stream has stopped, frames do not wait for it
MARKER_ALPHA = 0.45
MIN_MARKER_SIZE = 0.005  # metres: a flat object still gets a visible box
TEXT_HEIGHT = 0.04  # metres


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def has_3d(obj) -> bool:
    return obj.depth_status in (D.DEPTH_OK, D.DEPTH_SPARSE)


class NodeOutputs:
    def __init__(self, node):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from vision_msgs.msg import Detection2DArray, Detection3DArray
        from visualization_msgs.msg import MarkerArray

        self.node = node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_2d = node.create_publisher(Detection2DArray, '~/detections_2d', reliable)
        self.pub_3d = node.create_publisher(Detection3DArray, '~/detections_3d', reliable)
        self.pub_markers = node.create_publisher(MarkerArray, '~/markers', reliable)
        self._subs = []
        self._depths = collections.deque(maxlen=DEPTH_BUFFER)
        self._info = None
        self._last_depth_arrival = -math.inf  # time.monotonic()
        self._arrived = threading.Condition()
        self._marker_counts: dict[str, int] = {}  # markers last published per namespace (prompt)
        self.depth_topic = self.info_topic = ''

    def destroy(self):
        self.unsubscribe()
        for pub in (self.pub_2d, self.pub_3d, self.pub_markers):
            self.node.destroy_publisher(pub)

    # ------------------------------------------------------------------ depth input
    def subscribe(self) -> str:
        """Subscribe to depth and camera_info when depth_topic is set; a line for the node's ready log."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        topic = self.node.get_parameter('depth_topic').value
        if not topic:
            return 'no depth (depth_topic empty)'
        info_topic = self.node.get_parameter('camera_info_topic').value
        if not info_topic:
            info_topic = f'{topic.rsplit("/", 1)[0]}/camera_info' if '/' in topic else 'camera_info'
        reliability = self.node.get_parameter('depth_qos_reliability').value
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.node.get_parameter('depth_qos_depth').value,
                         reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                                      else ReliabilityPolicy.BEST_EFFORT))
        group = self.node._reentrant
        self._subs = [self.node.create_subscription(Image, topic, self._on_depth, qos, callback_group=group),
                      self.node.create_subscription(CameraInfo, info_topic, self._on_info, qos,
                                                    callback_group=group)]
        self.depth_topic, self.info_topic = (s.topic_name for s in self._subs)
        return f'depth {self.depth_topic} + {self.info_topic} ({reliability})'

    def unsubscribe(self):
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []
        with self._arrived:
            self._depths.clear()
            self._info = None

    def _on_depth(self, msg):
        with self._arrived:
            self._depths.append(msg)
            self._last_depth_arrival = time.monotonic()
            self._arrived.notify_all()

    def _on_info(self, msg):
        with self._arrived:
            self._info = msg

    def _pair(self, header):
        """(depth msg, camera_info msg) nearest to the frame's stamp, or (None, the reason)."""
        tolerance = self.node.get_parameter('depth_sync_tolerance').value
        t = stamp_seconds(header.stamp)
        deadline = time.monotonic() + DEPTH_WAIT_S
        with self._arrived:
            while True:
                depths, info = list(self._depths), self._info
                # Depth published with the frame may still be on its way: wait for it a little (not
                # when the depth stream has stopped, or every frame would wait).
                later = any(stamp_seconds(d.header.stamp) >= t - tolerance for d in depths)
                now = time.monotonic()
                streaming = now - self._last_depth_arrival < DEPTH_STREAM_GAP_S
                if later or t == 0 or not streaming or now >= deadline:
                    break
                remaining = deadline - now
                self._arrived.wait(remaining)
        if not depths:
            return None, f'no depth image received on {self.depth_topic} yet'
        if info is None:
            return None, f'no camera_info received on {self.info_topic} yet'
        if t == 0:  # an unstamped camera cannot be paired by stamp: the newest depth it is
            return depths[-1], info
        nearest = min(depths, key=lambda d: abs(stamp_seconds(d.header.stamp) - t))
        offset = stamp_seconds(nearest.header.stamp) - t
        if abs(offset) > tolerance:
            return None, (f'no depth image on {self.depth_topic} within {tolerance:g} s of the frame stamped '
                          f'{t:.3f} (nearest {offset:+.3f} s; parameter depth_sync_tolerance)')
        return nearest, info

    def depth_for_frame(self, header, colour_size):
        """The depth paired with a camera frame by stamp, or None (the reason logged, throttled)."""
        if not self._subs:
            return None
        depth_msg, info = self._pair(header)
        if depth_msg is None:
            self.node._fault('depth_sync', f'no 3D for this frame: {info}')
            return None
        return self._decode(depth_msg, info, header, colour_size, where=f'depth from {self.depth_topic}')

    def depth_for_query(self, request, header, colour_size):
        """Depth for a Query: the request's own (DepthError when unusable), else paired by stamp, else None."""
        if conversions.is_empty_image(request.depth):
            return self.depth_for_frame(header, colour_size)
        info = request.camera_info
        if info.width == 0 and info.height == 0:
            with self._arrived:
                info = self._info
            if info is None:
                raise D.DepthError('request depth: the request has no camera_info and none was received on '
                                   f'{self.info_topic or "a camera_info topic (depth_topic is empty)"}')
        try:
            return D.DepthFrame.from_msgs(request.depth, info, colour_size)
        except D.DepthError as exc:
            raise D.DepthError(f'request depth: {exc}') from None

    def _decode(self, depth_msg, info, header, colour_size, where):
        if depth_msg.header.frame_id != header.frame_id:
            self.node._fault('depth_frame', f'{where} is in frame {depth_msg.header.frame_id!r}, the camera frame in '
                                            f'{header.frame_id!r}: depth must be registered to the camera; 3D '
                                            f'results are given in {header.frame_id!r}')
        try:
            return D.DepthFrame.from_msgs(depth_msg, info, colour_size)
        except D.DepthError as exc:
            self.node._fault('depth', f'no 3D for this frame: {where}: {exc}')
            return None

    # ------------------------------------------------------------------ 3D per object
    def add_3d(self, msg, result, depth) -> None:
        """Fill the 3D fields of ``msg``'s objects (the kept objects of ``result``, in order) from ``depth``."""
        if depth is None:
            return
        kept = conversions.detections_from_result(result, self.node.get_parameter('score_threshold').value)
        options = dict(min_valid_fraction=self.node.get_parameter('min_depth_valid_fraction').value,
                       extent_percentile=self.node.get_parameter('extent_percentile').value)
        for obj, det in zip(msg.objects, kept):
            stats = D.object_3d(depth, det.mask, **options)
            obj.depth_status = stats.status
            obj.depth_valid_fraction = stats.valid_fraction
            obj.depth = stats.depth
            obj.centroid.x, obj.centroid.y, obj.centroid.z = stats.centroid
            obj.extent.x, obj.extent.y, obj.extent.z = stats.extent
            obj.extent_center.x, obj.extent_center.y, obj.extent_center.z = stats.center

    # ------------------------------------------------------------------ standard messages
    def publish(self, msg, depth) -> None:
        """Publish ``msg`` (a GroundedObjectArray) as vision_msgs and markers, to whoever subscribes."""
        if self.pub_2d.get_subscription_count() > 0:
            self.pub_2d.publish(detection_2d_array(msg))
        if depth is None:
            return
        if self.pub_3d.get_subscription_count() > 0:
            self.pub_3d.publish(detection_3d_array(msg))
        if self.pub_markers.get_subscription_count() > 0:
            markers = marker_array(msg, self._marker_counts.get(msg.prompt, 0))
            self._marker_counts[msg.prompt] = sum(m.action == m.ADD for m in markers.markers)
            self.pub_markers.publish(markers)


def _hypothesis(obj):
    """class_id = the phrase, score; the pose at the 3D centroid when there is one (else the origin)."""
    from vision_msgs.msg import ObjectHypothesisWithPose

    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = obj.phrase
    hyp.hypothesis.score = float(obj.score)
    hyp.pose.pose.orientation.w = 1.0
    if has_3d(obj):
        hyp.pose.pose.position.x, hyp.pose.pose.position.y, hyp.pose.pose.position.z = (
            obj.centroid.x, obj.centroid.y, obj.centroid.z)
    return hyp


def _tracking_id(obj) -> str:
    """vision_msgs' tracking id: the standing-prompt track id, empty for untracked objects (track_id 0)."""
    return str(obj.track_id) if obj.track_id else ''


def detection_2d_array(msg):
    """GroundedObjectArray -> vision_msgs/Detection2DArray (boxes in source pixels, header of the image)."""
    from vision_msgs.msg import Detection2D, Detection2DArray

    out = Detection2DArray(header=msg.header)
    for obj in msg.objects:
        det = Detection2D(header=msg.header, results=[_hypothesis(obj)], id=_tracking_id(obj))
        det.bbox.center.position.x = 0.5 * (obj.x_min + obj.x_max)
        det.bbox.center.position.y = 0.5 * (obj.y_min + obj.y_max)
        det.bbox.size_x = float(obj.x_max - obj.x_min)
        det.bbox.size_y = float(obj.y_max - obj.y_min)
        out.detections.append(det)
    return out


def detection_3d_array(msg):
    """GroundedObjectArray -> vision_msgs/Detection3DArray: objects with 3D only, axis-aligned in the optical frame."""
    from vision_msgs.msg import Detection3D, Detection3DArray

    out = Detection3DArray(header=msg.header)
    for obj in msg.objects:
        if not has_3d(obj):
            continue
        det = Detection3D(header=msg.header, results=[_hypothesis(obj)], id=_tracking_id(obj))
        det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.center.position.z = (
            obj.extent_center.x, obj.extent_center.y, obj.extent_center.z)
        det.bbox.center.orientation.w = 1.0
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = obj.extent.x, obj.extent.y, obj.extent.z
        out.detections.append(det)
    return out


def marker_array(msg, previous: int = 0):
    """RViz markers for a result: per object with 3D a translucent box and a "phrase score distance" label.

    Namespace = the prompt, ids 0, 1, ...; ids up to ``previous`` (the count of
    the prompt's last result) that this result does not reuse are deleted, so
    each result replaces the last one of its prompt.
    """
    from visualization_msgs.msg import Marker, MarkerArray

    ns = msg.prompt
    out = MarkerArray()
    drawn = [(index, obj) for index, obj in enumerate(msg.objects) if has_3d(obj)]
    for i, (index, obj) in enumerate(drawn):
        r, g, b = (c / 255.0 for c in conversions._PALETTE[index % len(conversions._PALETTE)])  # the overlay's colour
        box = Marker(header=msg.header, ns=ns, id=2 * i, type=Marker.CUBE, action=Marker.ADD)
        box.pose.position.x, box.pose.position.y, box.pose.position.z = (
            obj.extent_center.x, obj.extent_center.y, obj.extent_center.z)
        box.pose.orientation.w = 1.0
        box.scale.x, box.scale.y, box.scale.z = (max(v, MIN_MARKER_SIZE) for v in
                                                 (obj.extent.x, obj.extent.y, obj.extent.z))
        box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, MARKER_ALPHA
        label = Marker(header=msg.header, ns=ns, id=2 * i + 1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        label.pose.position.x, label.pose.position.y = obj.extent_center.x, obj.extent_center.y
        # above the box: -y is up in the optical frame
        label.pose.position.z = obj.extent_center.z
        label.pose.position.y -= 0.5 * box.scale.y + TEXT_HEIGHT
        label.pose.orientation.w = 1.0
        label.scale.z = TEXT_HEIGHT
        label.color.r, label.color.g, label.color.b, label.color.a = r, g, b, 1.0
        distance = math.sqrt(obj.centroid.x ** 2 + obj.centroid.y ** 2 + obj.centroid.z ** 2)
        label.text = f'{obj.phrase} {obj.score:.2f} {distance:.2f} m'
        out.markers += [box, label]
    out.markers += [Marker(header=msg.header, ns=ns, id=i, action=Marker.DELETE)
                    for i in range(len(out.markers), previous)]
    return out
