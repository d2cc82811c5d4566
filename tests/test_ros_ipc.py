"""A message and a service call cross between two real processes (Fast DDS, loopback)."""
import sys

import numpy as np
import pytest
import rclpy

from ros_pgpt.msg import GroundedObjectArray
from ros_pgpt.srv import Query
from ros_helpers import REPO_ROOT, RosProcess, call_service, spin_until, unique_name

sys.path.insert(0, str(REPO_ROOT / 'tests'))
from ros_peer import make_result  # noqa: E402

pytestmark = pytest.mark.ros

PEER = REPO_ROOT / 'tests' / 'ros_peer.py'


def test_topic_and_service_cross_processes(ros_env, ros_context):
    service, topic = unique_name('query'), unique_name('objects')
    node = rclpy.create_node('ros_pgpt_test_client', context=ros_context)
    received = []
    node.create_subscription(GroundedObjectArray, topic, received.append, 10)
    client = node.create_client(Query, service)

    with RosProcess([PEER, '--service', service, '--topic', topic], ros_env) as peer:
        peer.wait_for_output('ready', timeout=30)

        # 1. topic: a filled GroundedObjectArray (with a mask) arrives intact.
        spin_until(node, lambda: received, timeout=30, message=f'a message on {topic}')
        assert received[0] == make_result('published')
        assert bytes(received[0].objects[0].mask.data) == bytes([0, 255, 255, 0] * 3)

        # 2. service: the request (with an image) reaches the peer and comes back.
        image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        req = Query.Request(prompt='red mug', visual_tokens=99, masks=True)
        req.image.height, req.image.width, req.image.step, req.image.encoding = 24, 32, 96, 'rgb8'
        req.image.data = image.tobytes()
        resp = call_service(node, client, req, timeout=30)
        assert resp.success, resp.message
        assert resp.result.prompt == 'red mug' and resp.result.answer == 'echo: red mug'
        assert resp.result.visual_tokens == 99
        echoed = np.frombuffer(bytes(resp.result.objects[0].mask.data), np.uint8).reshape(24, 32, 3)
        np.testing.assert_array_equal(echoed, image)

        # 3. a failure is reported as success=False with a reason.
        resp = call_service(node, client, Query.Request(prompt=''), timeout=30)
        assert resp.success is False and resp.message == 'empty prompt'

        assert peer.alive(), peer.output()
    node.destroy_node()


def test_isolated_domains_do_not_see_each_other(tmp_path, ros_env, ros_context):
    """The per-test ROS_DOMAIN_ID really isolates: a peer on another domain is invisible."""
    from ros_helpers import isolated_ros_env
    other = isolated_ros_env(tmp_path / 'other', domain_id=(int(ros_env['ROS_DOMAIN_ID']) % 100) + 1)
    service, topic = unique_name('query'), unique_name('objects')
    node = rclpy.create_node('ros_pgpt_test_isolation', context=ros_context)
    client = node.create_client(Query, service)
    with RosProcess([PEER, '--service', service, '--topic', topic], other) as peer:
        peer.wait_for_output('ready', timeout=30)
        assert not client.wait_for_service(timeout_sec=2.0)
    node.destroy_node()
