"""Compressed camera input and standing prompts (one node per module: input=compressed).

The node subscribes to sensor_msgs/CompressedImage (jpeg/png) and grounds its
standing prompt on new frames at most `rate` times per second.
"""
import time

import numpy as np
import pytest

from node_support import NodeUnderTest, scene

pytestmark = pytest.mark.ros

STANDING = 'point to every shape'
RATE = 2.0


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    with NodeUnderTest(tmp_path_factory.mktemp('node_compressed'),
                       {'input': 'compressed', 'standing_prompts': [STANDING], 'rate': RATE,
                        'max_image_age': 0.0, 'masks': True}) as n:
        yield n


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_query_on_compressed_frame(node, fmt):
    stamp = {'jpeg': (10, 0), 'png': (11, 0)}[fmt]
    node.publish_frame(scene(5).scene.image, stamp=stamp, compressed=fmt, frame_id=f'cam_{fmt}')
    response = node.query('where is the red object?', masks=True)
    assert response.success, response.message
    result = response.result
    assert result.header.frame_id == f'cam_{fmt}' and result.header.stamp.sec == stamp[0]
    for obj in result.objects:
        assert 0 < obj.mask.width < 640 and 0 < obj.mask.height < 480, 'masks are cropped to their boxes'


def test_corrupt_compressed_frame(node):
    from sensor_msgs.msg import CompressedImage

    wait = time.monotonic() + 10
    while node.compressed_pub.get_subscription_count() == 0 and time.monotonic() < wait:
        time.sleep(0.05)
    msg = CompressedImage(format='jpeg', data=b'\xff\xd8\xff\xe0' + bytes(range(256)) * 4)
    msg.header.stamp.sec = 20
    node.compressed_pub.publish(msg)
    node.spin(0.3)
    response = node.query('where is the red object?')
    assert not response.success
    assert 'could not decode' in response.message and 'jpeg' in response.message
    assert '[decode]' in node.output()
    node.publish_frame(scene(6).scene.image, stamp=(21, 0), compressed='jpeg')
    response = node.query('where is the red object?')
    assert response.success, response.message
    assert response.result.header.stamp.sec == 21


def test_standing_prompt_results_follow_frames(node):
    node.spin(0.5)
    node.detections.clear()
    image = scene(7).scene.image
    sent = []
    t0 = time.monotonic()
    for i in range(20):  # 10 Hz for 2 s
        node.publish_frame(image, stamp=(1000 + i, 0), compressed='jpeg', settle=0)
        sent.append(1000 + i)
        node.spin(max(0.0, t0 + (i + 1) * 0.1 - time.monotonic()))
    node.spin(3.0)  # the last run finishes
    got = [d for d in node.detections if d.prompt == STANDING and d.header.stamp.sec >= 1000]
    assert got, f'no standing-prompt results\n{node.output()[-2000:]}'
    stamps = [d.header.stamp.sec for d in got]
    assert set(stamps) <= set(sent)
    assert stamps == sorted(stamps)
    # rate limit: 2 s of frames at <= 2 Hz -> at most ~5 runs (20 frames arrived)
    assert len(got) <= RATE * 2.0 + 2, stamps
    for det in got:
        assert det.visual_tokens == 64 and det.standing
        for obj in det.objects:
            assert 0 < obj.mask.width < 640 and 0 < obj.mask.height < 480, 'masks are cropped to their boxes'
            assert obj.mask.header.stamp.sec == det.header.stamp.sec


def test_change_standing_prompts_at_run_time(node):
    new = 'where is the blue object?'
    results = node.set_parameters(standing_prompts=[new, STANDING])
    assert results[0].successful, results[0].reason
    try:
        node.spin(0.6)
        node.publish_frame(scene(8).scene.image, stamp=(2000, 0), compressed='jpeg')
        # both prompts' results in one message for the frame
        node.spin_until(lambda: any(d.prompt == f'{new}\n{STANDING}' for d in node.detections
                                    if d.header.stamp.sec == 2000), 20.0, 'one result with both standing prompts')
        assert len([d for d in node.detections if d.header.stamp.sec == 2000]) == 1
    finally:
        assert node.set_parameters(standing_prompts=[STANDING])[0].successful
    assert node.set_parameters(standing_prompts=[])[0].successful
    node.spin(1.0)
    node.publish_frame(scene(8).scene.image, stamp=(2001, 0), compressed='jpeg')
    node.spin(2.0)
    assert not [d for d in node.detections if d.header.stamp.sec == 2001], 'no standing prompts: no results'
    assert node.set_parameters(standing_prompts=[STANDING])[0].successful


def test_standing_overlay(node):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    overlays = []
    sub = node.ros.create_subscription(Image, f'{node.ns}/ros_pgpt/overlay', overlays.append,
                                       QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    try:
        node.spin(1.0)
        image = scene(9).scene.image
        node.publish_frame(image, stamp=(3000, 0), compressed='png')
        msg = node.spin_until(lambda: next((m for m in overlays if m.header.stamp.sec == 3000), None), 20.0,
                              'standing overlay')
        assert msg.encoding == 'rgb8' and (msg.width, msg.height) == (640, 480)
        drawn = np.frombuffer(bytes(msg.data), np.uint8).reshape(480, 640, 3)
        assert not np.array_equal(drawn, image)
    finally:
        node.ros.destroy_subscription(sub)


def test_node_still_alive(node):
    assert node.proc.alive(), node.output()[-2000:]
