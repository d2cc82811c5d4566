"""Helpers for the perception-node tests: start the real node, talk to it over the middleware.

    with NodeUnderTest(tmp_dir, {'max_image_age': 1.5}) as node:
        response = node.query('where is the red star?', image=rgb, masks=True)
        node.publish_frame(rgb, stamp=(12, 0))

The node runs as a child process (``ros-pgpt node --ros-args --params-file
config/perception.yaml --params-file <overrides>``) in an isolated ROS world
(own domain id, loopback, ROS_HOME in tmp), in a unique namespace, with the
real default checkpoint (``ros_pgpt.checkpoints.default_checkpoint()``).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ros_helpers import REPO_ROOT, RosProcess, isolated_ros_env, poll, rclpy_context, unique_name, wait_for

START_TIMEOUT = 180.0  # model loading on a busy 2-core CI machine


def scene(seed: int, size=(640, 480), n_queries: int = 6):
    from ros_pgpt.data import SceneGenerator

    return SceneGenerator(resolutions=[size]).sample(seed, n_queries=n_queries)


class NodeUnderTest:
    def __init__(self, tmp_dir, params: dict | None = None, *, autostart_wait: bool = True):
        from ros_pgpt.ros.launcher import node_command, write_params_file

        self.tmp_dir = tmp_dir
        self.env = isolated_ros_env(tmp_dir)
        self.ns = unique_name('pgpt')
        self.camera = f'{self.ns}/camera/image_raw'
        self.compressed_topic = f'{self.camera}/compressed'
        self.service = f'{self.ns}/ros_pgpt/query'
        self.node_fqn = f'{self.ns}/ros_pgpt'
        self.params = dict(params or {})
        overrides = write_params_file(tmp_dir / 'overrides.yaml', self.params)
        argv = node_command(params_files=[overrides], namespace=self.ns,
                            remaps={'image': self.camera, 'image/compressed': self.compressed_topic})
        self.proc = RosProcess(argv, self.env, cwd=REPO_ROOT, python=False, log_path=tmp_dir / 'node.log')
        self._stack = contextlib.ExitStack()
        self._stack.callback(self.proc.stop)
        try:
            self._open_client()
            if autostart_wait:
                self.proc.wait_for_output('ready: serving', START_TIMEOUT)
                self.client.wait(30.0)
        except BaseException:
            self._stack.close()
            raise

    def _open_client(self):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from ros_pgpt.msg import GroundedObjectArray
        from ros_pgpt.ros.query import QueryClient

        self.context = self._stack.enter_context(rclpy_context(self.env))
        self.client = QueryClient(self.service, context=self.context, node_name='pgpt_test_client')
        self._stack.callback(self.client.close)
        self.ros = self.client.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.ros.create_publisher(Image, self.camera, reliable)
        self.compressed_pub = self.ros.create_publisher(CompressedImage, self.compressed_topic, reliable)
        self.detections = []
        self.ros.create_subscription(GroundedObjectArray, f'{self.ns}/ros_pgpt/detections',
                                     self.detections.append, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    # -------------------------------------------------------------- talking to the node
    def output(self) -> str:
        return self.proc.output()

    def spin(self, seconds: float):
        self.client.spin(seconds)

    def spin_until(self, predicate, timeout: float, message: str = 'condition'):
        try:
            return poll(predicate, timeout, lambda: self.client.executor.spin_once(timeout_sec=0.05), message)
        except TimeoutError as exc:
            raise TimeoutError(f'{exc}\n--- node output:\n{self.output()[-3000:]}') from None

    def request(self, prompt: str, image=None, *, masks: bool = False, tokens: int = 0, boxes=(),
                frame_id: str = 'test_cam', stamp=(0, 0), full_frame_masks: bool = False):
        from ros_pgpt.ros.query import build_request

        req = build_request(prompt, image=image, masks=masks, tokens=tokens, boxes=boxes, frame_id=frame_id,
                            full_frame_masks=full_frame_masks)
        req.image.header.stamp.sec, req.image.header.stamp.nanosec = stamp
        return req

    def call(self, request, timeout: float = 120.0):
        response, ms = self.client.call(request, timeout)
        assert response is not None, f'no answer from {self.service} in {timeout} s\n{self.output()[-3000:]}'
        self.last_ms = ms
        return response

    def query(self, prompt: str, image=None, **kwargs):
        timeout = kwargs.pop('timeout', 120.0)
        return self.call(self.request(prompt, image, **kwargs), timeout)

    def publish_frame(self, rgb, stamp=(1, 0), frame_id: str = 'camera', compressed: str | None = None,
                      settle: float = 0.3):
        """Publish a camera frame (raw rgb8, or 'jpeg'/'png' compressed) and give it time to arrive."""
        from ros_pgpt.ros import conversions

        pub = self.compressed_pub if compressed else self.image_pub
        wait_for(lambda: pub.get_subscription_count() > 0, 30.0, message=f'node subscribed to {pub.topic_name}')
        msg = conversions.rgb_to_compressed_msg(rgb, compressed) if compressed else conversions.rgb_to_image_msg(rgb)
        msg.header.frame_id = frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        pub.publish(msg)
        if settle:
            self.spin(settle)
        return msg

    def call_service(self, srv_type, name: str, request, timeout: float = 20.0):
        """Call the node's service ``~/name`` (e.g. 'set_parameters') once; returns the response."""
        client = self.ros.create_client(srv_type, f'{self.node_fqn}/{name}')
        try:
            self.spin_until(client.service_is_ready, timeout, f'{name} service')
            future = client.call_async(request)
            self.client.executor.spin_until_future_complete(future, timeout_sec=timeout)
            assert future.done(), f'no answer from {name}'
            return future.result()
        finally:
            self.ros.destroy_client(client)

    def set_parameters(self, **values):
        """Set node parameters through its ~/set_parameters service; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request()
        for name, value in values.items():
            if isinstance(value, list):
                param = Parameter(name, Parameter.Type.STRING_ARRAY, value)
            else:
                param = Parameter(name, value=value)
            req.parameters.append(param.to_parameter_msg())
        return self.call_service(SetParameters, 'set_parameters', req).results

    def close(self):
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def mask_array(obj, width: int = 640, height: int = 480) -> np.ndarray:
    """An object's mask placed in its ``width`` x ``height`` source image (masks are crops by default)."""
    from ros_pgpt.ros.conversions import mask_in_frame

    return mask_in_frame(obj, width, height)
