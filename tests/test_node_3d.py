"""3D from depth and the standard outputs, through the real node (one node for the module).

A rendered scene with known geometry: the shapes of a synthetic tabletop scene
are flat, facing the camera, each at its own distance in front of a wall;
pinhole intrinsics are known, so every object's true 3D centroid is too. The
depth goes to the node inline (Query.depth + camera_info) and over topics
(paired by stamp), at the colour resolution and at half of it, in both
encodings (16UC1 millimetres, 32FC1 metres). One object's depth is a hole (no
reading), another's is sparse. The results are checked on the Query response
and on vision_msgs Detection2DArray / Detection3DArray and MarkerArray
subscribers built from the vision_msgs definitions.
"""
import math

import cv2
import numpy as np
import pytest

from node_support import NodeUnderTest, scene
from ros_pgpt.ros.depth import (DEPTH_MISSING, DEPTH_NONE, DEPTH_OK, DEPTH_SPARSE, Intrinsics, camera_info_msg,
                                depth_to_msg)
from ros_pgpt.data.geometry import box_iou

pytestmark = pytest.mark.ros

SEED = 0
PROMPT = 'point to every shape'
K = Intrinsics(fx=525.0, fy=525.0, cx=319.5, cy=239.5, width=640, height=480)
WALL_M = 3.0
TOLERANCE = 0.02  # of the true distance
HOLE_MARGIN = 8  # px around an object's box where the depth camera reads nothing
NOISE = 0.003  # relative depth noise (standard deviation)


@pytest.fixture(scope='module')
def world():
    return make_world()


def make_world():
    """The scene, each object's distance, and which object is a hole / sparse."""
    sample = scene(SEED)
    objects = sample.scene.objects
    by_area = sorted(range(len(objects)), key=lambda i: -objects[i].mask.sum())
    assert len(objects) >= 4, 'the scene needs room for two ordinary objects, a hole and a sparse one'
    distances = [0.6 + 0.35 * i for i in range(len(objects))]
    hole, sparse = by_area[1], by_area[2]  # large ones: the model finds them
    return sample.scene.image, objects, distances, hole, sparse


def depth_metres(world) -> np.ndarray:
    """Depth at the colour resolution, metres; NaN where the camera reads nothing."""
    image, objects, distances, hole, sparse = world
    depth = np.full(image.shape[:2], WALL_M, np.float32)
    for obj, distance in zip(objects, distances):
        depth[obj.mask] = distance
    depth *= 1 + np.random.default_rng(0).normal(0, NOISE, depth.shape).astype(np.float32)  # sensor noise
    v, u = np.mgrid[:depth.shape[0], :depth.shape[1]]
    reads = ((v // 2) % 3 == 0) & ((u // 2) % 3 == 0)  # 1 pixel in 9, in 2x2 blocks (survive half resolution)
    for index, hole_reads in ((hole, np.zeros_like(reads)), (sparse, reads)):
        x0, y0, x1, y1 = (int(b) for b in objects[index].box)
        region = np.zeros_like(reads)
        region[max(0, y0 - HOLE_MARGIN):y1 + HOLE_MARGIN, max(0, x0 - HOLE_MARGIN):x1 + HOLE_MARGIN] = True
        depth[region & ~hole_reads] = np.nan
    return depth


def depth_msg(metres: np.ndarray, encoding: str, size, stamp=(0, 0), frame_id='test_cam'):
    small = cv2.resize(metres, size, interpolation=cv2.INTER_NEAREST) if size != metres.shape[::-1] else metres
    if encoding == '16UC1':
        small = np.where(np.isfinite(small), np.round(small * 1000), 0).astype(np.uint16)
    return depth_to_msg(small, header(stamp, frame_id))


def header(stamp=(0, 0), frame_id='test_cam'):
    from std_msgs.msg import Header

    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = stamp
    return msg


def true_points(obj, distance):
    """The object's pixels back-projected at its distance (colour-resolution K), (N, 3)."""
    vs, us = np.nonzero(obj.mask)
    return np.stack([(us - K.cx) * distance / K.fx, (vs - K.cy) * distance / K.fy, np.full(us.shape, distance)], 1)


def matched(result, world):
    """(message object, scene object index) pairs, by box IoU >= 0.5."""
    _, objects, *_ = world
    pairs = []
    for obj in result.objects:
        box = (obj.x_min, obj.y_min, obj.x_max, obj.y_max)
        ious = [box_iou(box, o.box) for o in objects]
        best = int(np.argmax(ious))
        if ious[best] >= 0.5:
            pairs.append((obj, best))
    return pairs


def check_3d(result, world):
    """Every matched object's 3D is right: centroid within 2 % of the true distance, flags on the holes."""
    _, objects, distances, hole, sparse = world
    pairs = matched(result, world)
    found = {index for _, index in pairs}
    assert len(found) >= 3 and hole in found and sparse in found, (
        f'the model must find the hole, the sparse object and another one; found {sorted(found)} of '
        f'{len(objects)}: {[(o.phrase, o.x_min, o.y_min) for o in result.objects]}')
    ok = 0
    for obj, index in pairs:
        if index == hole:
            assert obj.depth_status == DEPTH_MISSING and obj.depth_valid_fraction == 0.0
            assert math.isnan(obj.depth) and math.isnan(obj.centroid.z)
            continue
        if index == sparse:
            assert obj.depth_status == DEPTH_SPARSE and 0.0 < obj.depth_valid_fraction < 0.2, obj.depth_valid_fraction
            assert abs(obj.depth - distances[index]) <= TOLERANCE * distances[index]
            continue
        assert obj.depth_status == DEPTH_OK, f'object {index}: status {obj.depth_status}'
        points = true_points(objects[index], distances[index])
        truth = np.median(points, axis=0)
        got = np.array([obj.centroid.x, obj.centroid.y, obj.centroid.z])
        error = np.linalg.norm(got - truth)
        assert error <= TOLERANCE * np.linalg.norm(truth), f'object {index}: {got} vs true {truth}'
        assert abs(obj.depth - distances[index]) <= TOLERANCE * distances[index]
        assert obj.depth_valid_fraction > 0.9
        # a flat object: no depth extent; its size is the 5th..95th percentile range of its true points
        assert obj.extent.z <= TOLERANCE * distances[index]
        low, high = np.percentile(points, [5, 95], axis=0)
        np.testing.assert_allclose([obj.extent.x, obj.extent.y], (high - low)[:2], rtol=0.25)
        ok += 1
    assert ok >= 1
    return pairs


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    from visualization_msgs.msg import MarkerArray

    with NodeUnderTest(tmp_path_factory.mktemp('node_3d'),
                       {'depth_topic': 'depth/image_raw', 'max_image_age': 0.0, 'fault_log_period': 0.0}) as n:
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        n.got = {'2d': [], '3d': [], 'markers': []}
        for key, cls, topic in (('2d', Detection2DArray, 'detections_2d'), ('3d', Detection3DArray, 'detections_3d'),
                                ('markers', MarkerArray, 'markers')):
            n.ros.create_subscription(cls, f'{n.ns}/ros_pgpt/{topic}', n.got[key].append, reliable)
        from sensor_msgs.msg import CameraInfo, Image
        n.depth_pub = n.ros.create_publisher(Image, f'{n.ns}/depth/image_raw', reliable)
        n.info_pub = n.ros.create_publisher(CameraInfo, f'{n.ns}/depth/camera_info', reliable)
        n.spin_until(lambda: n.depth_pub.get_subscription_count() and n.info_pub.get_subscription_count(), 30.0,
                     'node subscribed to depth and camera_info')
        yield n


def inline_query(node, world, encoding, size, info_size, stamp, masks=False):
    image = world[0]
    request = node.request(PROMPT, image, masks=masks, stamp=stamp)
    request.depth = depth_msg(depth_metres(world), encoding, size, stamp)
    request.camera_info = camera_info_msg(K.scaled_to(*info_size), header())
    return node.call(request)


def received(node, key, stamp):
    """Messages received on an output for the frame stamped ``stamp`` (a MarkerArray by its markers' header)."""
    def header(m):
        return m.markers[0].header if key == 'markers' else m.header
    return [m for m in node.got[key]
            if (key != 'markers' or m.markers) and (header(m).stamp.sec, header(m).stamp.nanosec) == stamp]


# ------------------------------------------------------------------ inline depth
@pytest.mark.parametrize('encoding,size,info_size', [
    ('32FC1', (640, 480), (640, 480)),
    ('16UC1', (320, 240), (320, 240)),
    ('16UC1', (320, 240), (640, 480)),  # camera_info at the colour resolution, scaled to the depth's
], ids=['32FC1-full', '16UC1-half', '16UC1-half-info-full'])
def test_inline_depth_gives_3d_within_two_percent(node, world, encoding, size, info_size):
    stamp = (100 + size[0] + info_size[0] + len(encoding), 5)
    response = inline_query(node, world, encoding, size, info_size, stamp)
    assert response.success, response.message
    pairs = check_3d(response.result, world)
    for obj, _ in pairs:  # 3D needs masks, but they were not asked for
        assert obj.mask.width == 0

    # the same objects as vision_msgs, to whoever subscribes
    node.spin_until(lambda: all(received(node, key, stamp) for key in ('2d', '3d', 'markers')), 10.0,
                    'vision_msgs and markers for the query')
    det2d = received(node, '2d', stamp)[0]
    assert det2d.header.frame_id == 'test_cam'
    assert len(det2d.detections) == len(response.result.objects)
    for det, obj in zip(det2d.detections, response.result.objects):
        hyp = det.results[0].hypothesis
        assert hyp.class_id == obj.phrase and hyp.score == pytest.approx(obj.score, abs=1e-6)
        assert det.bbox.center.position.x == pytest.approx(0.5 * (obj.x_min + obj.x_max), abs=1e-3)
        assert det.bbox.size_y == pytest.approx(obj.y_max - obj.y_min, abs=1e-3)
    det3d = received(node, '3d', stamp)[0]
    with_3d = [o for o in response.result.objects if o.depth_status in (DEPTH_OK, DEPTH_SPARSE)]
    assert len(det3d.detections) == len(with_3d) >= 2
    for det, obj in zip(det3d.detections, with_3d):
        assert det.results[0].hypothesis.class_id == obj.phrase
        assert det.results[0].pose.pose.position.z == pytest.approx(obj.centroid.z, rel=1e-6)
        assert det.bbox.size.x == pytest.approx(obj.extent.x, rel=1e-6)
        assert det.bbox.center.position.z == pytest.approx(obj.extent_center.z, rel=1e-6)


def test_markers_for_rviz(node, world):
    from visualization_msgs.msg import Marker

    stamp = (300, 0)
    response = inline_query(node, world, '32FC1', (640, 480), (640, 480), stamp)
    assert response.success, response.message
    node.spin_until(lambda: received(node, 'markers', stamp), 10.0, 'markers')
    markers = received(node, 'markers', stamp)[0].markers
    with_3d = [o for o in response.result.objects if o.depth_status in (DEPTH_OK, DEPTH_SPARSE)]
    boxes = [m for m in markers if m.type == Marker.CUBE and m.action == Marker.ADD]
    labels = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(labels) == len(with_3d)
    for box, label, obj in zip(boxes, labels, with_3d):
        assert box.header.frame_id == 'test_cam' and box.ns == PROMPT
        assert box.pose.position.z == pytest.approx(obj.extent_center.z, rel=1e-6)
        assert obj.phrase in label.text and label.text.endswith(' m')


def test_masks_when_asked_come_with_3d(node, world):
    response = inline_query(node, world, '32FC1', (640, 480), (640, 480), (301, 0), masks=True)
    assert response.success, response.message
    assert response.result.objects and all(o.mask.width and o.mask.height for o in response.result.objects)
    check_3d(response.result, world)


def test_query_command_line_with_a_depth_file(node, world, tmp_path):
    """`ros-pgpt query --depth FILE --intrinsics ...` prints each object's 3D, flagging holes and sparse depth."""
    import re
    import subprocess
    import sys

    from ros_helpers import REPO_ROOT
    from ros_pgpt.ros.conversions import write_image_file

    _, objects, distances, hole, sparse = world
    write_image_file(tmp_path / 'rgb.png', world[0])
    half = cv2.resize(depth_metres(world), (320, 240), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / 'depth.png'), np.where(np.isfinite(half), np.round(half * 1000), 0).astype(np.uint16))
    k = K.scaled_to(320, 240)
    res = subprocess.run([sys.executable, '-m', 'ros_pgpt', 'query', '--service', node.service, '--timeout', '60',
                          PROMPT, '--image', str(tmp_path / 'rgb.png'), '--depth', str(tmp_path / 'depth.png'),
                          '--intrinsics', *map(str, (k.fx, k.fy, k.cx, k.cy))],
                         env=node.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'centroid x, y, z (m)' in res.stdout
    assert 'no depth under the object' in res.stdout and 'sparse:' in res.stdout, res.stdout
    printed_z = [float(z) for z in re.findall(r'\s-?[\d.]+,\s*-?[\d.]+,\s*(-?[\d.]+)(?:\s|$)', res.stdout)]
    solid = [d for i, d in enumerate(distances) if i not in (hole, sparse)]
    assert any(abs(z - d) <= TOLERANCE * d for z in printed_z for d in solid), res.stdout
    bad = subprocess.run([sys.executable, '-m', 'ros_pgpt', 'query', PROMPT, '--depth', str(tmp_path / 'rgb.png')],
                         env=node.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and 'one channel of uint16 millimetres' in bad.stderr, bad.stderr


def test_depth_of_another_aspect_is_refused_clearly(node, world):
    request = node.request(PROMPT, world[0])
    request.depth = depth_msg(depth_metres(world), '32FC1', (640, 360))
    request.camera_info = camera_info_msg(K, header())
    response = node.call(request)
    assert not response.success
    assert 'colour image is 640x480' in response.message and 'depth image is 640x360' in response.message
    assert 'registered' in response.message


def test_inline_depth_without_any_camera_info_is_refused(node, world):
    request = node.request(PROMPT, world[0])
    request.depth = depth_msg(depth_metres(world), '32FC1', (640, 480))
    response = node.call(request)  # no camera_info inline, none published yet on the topic
    assert not response.success
    assert 'no camera_info' in response.message, response.message


# ------------------------------------------------------------------ depth over topics
def test_topic_depth_paired_by_stamp(node, world):
    stamp = (400, 250_000_000)
    node.info_pub.publish(camera_info_msg(K, header(stamp)))
    node.depth_pub.publish(depth_msg(depth_metres(world), '16UC1', (320, 240), stamp))
    node.spin(1.0)  # a lone depth image (no stream) is not waited for: let it arrive first
    node.publish_frame(world[0], stamp=stamp, frame_id='test_cam')
    response = node.query(PROMPT)  # the latest frame
    assert response.success, response.message
    assert (response.result.header.stamp.sec, response.result.header.stamp.nanosec) == stamp
    check_3d(response.result, world)


def test_inline_depth_with_the_topics_camera_info(node, world):
    """Query.depth without Query.camera_info: the latest camera_info from the topic (published above)."""
    request = node.request(PROMPT, world[0], stamp=(450, 0))
    request.depth = depth_msg(depth_metres(world), '32FC1', (640, 480), (450, 0))
    response = node.call(request)
    assert response.success, response.message
    check_3d(response.result, world)


def test_topic_depth_too_far_in_time_gives_no_3d(node, world):
    node.depth_pub.publish(depth_msg(depth_metres(world), '16UC1', (320, 240), (500, 0)))
    node.publish_frame(world[0], stamp=(500, 100_000_000), frame_id='test_cam')  # 0.1 s later
    response = node.query(PROMPT)
    assert response.success, response.message
    assert response.result.objects
    assert all(o.depth_status == DEPTH_NONE for o in response.result.objects)
    node.spin_until(lambda: 'no depth image on' in node.output() and 'depth_sync_tolerance' in node.output(), 10.0,
                    'the pairing failure logged')


def test_standing_prompt_results_as_vision_msgs(node, world):
    stamp = (600, 0)
    results = node.set_parameters(standing_prompts=[PROMPT], rate=0.0)
    assert all(r.successful for r in results)
    try:
        # a depth stream: the previous depth image has arrived; the frame's own is sent just after the
        # frame (large, it arrives later), and the standing run waits for it
        node.info_pub.publish(camera_info_msg(K, header(stamp)))
        node.depth_pub.publish(depth_msg(depth_metres(world), '32FC1', (640, 480), (599, 900_000_000)))
        node.spin(0.5)
        node.publish_frame(world[0], stamp=stamp, frame_id='test_cam', settle=0)
        node.depth_pub.publish(depth_msg(depth_metres(world), '32FC1', (640, 480), stamp))
        node.spin_until(lambda: received(node, '3d', stamp) and received(node, '2d', stamp) and any(
            (d.header.stamp.sec, d.header.stamp.nanosec) == stamp for d in node.detections), 60.0,
            'standing-prompt result and its vision_msgs')
    finally:
        node.set_parameters(standing_prompts=[])
    det = next(d for d in node.detections if (d.header.stamp.sec, d.header.stamp.nanosec) == stamp)
    assert det.prompt == PROMPT
    check_3d(det, world)
    assert [d.results[0].hypothesis.class_id for d in received(node, '2d', stamp)[0].detections] == \
        [o.phrase for o in det.objects]


def test_node_advertises_the_real_vision_msgs_type_hashes(node):
    """What goes over the wire: the node's publishers carry the type hashes of upstream vision_msgs."""
    from test_interfaces import VISION_MSGS_HASHES

    for topic, name in (('detections_2d', 'Detection2DArray'), ('detections_3d', 'Detection3DArray')):
        infos = node.ros.get_publishers_info_by_topic(f'{node.ns}/ros_pgpt/{topic}')
        assert len(infos) == 1 and infos[0].topic_type == f'vision_msgs/msg/{name}'
        type_hash = infos[0].topic_type_hash
        assert (type_hash.version, bytes(type_hash.value).hex()) == (1, VISION_MSGS_HASHES[name])
