"""The perception node's entry point: parse arguments, spin, stop cleanly.

    ros2 run ros_pgpt perception_node [--ros-args ...]     # with a ROS install
    ros-pgpt node [--ros-args ...]                         # the venv route

``main`` is imported by ``scripts/perception_node``, ``python -m ros_pgpt.ros`` and ``ros-pgpt node``.
rclpy and the model are imported only when it runs. See docs/NODE.md.
"""
from __future__ import annotations

import sys
import threading
import time

SPIN_PERIOD_S = 0.1  # how soon the executor loop notices a stop request
FLUSH_S = 0.5  # after stopping, how long the executor still spins to deliver the last answers
GIL_SWITCH_INTERVAL_S = 0.0005

USAGE = """usage: ros-pgpt node [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] [-r FROM:=TO ...]]

Starts the ros_pgpt perception node (default name "ros_pgpt"): services ~/query
(ros_pgpt/srv/Query) and ~/set_prompts (ros_pgpt/srv/SetPrompts), topics
~/detections (ros_pgpt/msg/GroundedObjectArray), ~/overlay (sensor_msgs/Image),
~/detections_2d and ~/detections_3d (vision_msgs/Detection2DArray,
Detection3DArray), ~/markers (visualization_msgs/MarkerArray), ~/prompts
(std_msgs/String in: the standing prompts, one per line), camera input "image"
or "image/compressed" (remap, e.g. -r image:=/camera/image_raw), depth input
from the depth_topic parameter (e.g. -p depth_topic:=/camera/aligned_depth_to_color/image_raw).

parameters:
"""


def _usage() -> str:
    from ros_pgpt.ros.params import PARAMS

    lines = [USAGE]
    for p in PARAMS:
        lines.append(f'  {p.name} ({p.kind}, default {p.default!r}): {p.description}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; returns an exit code (1 when configure failed, else 0)."""
    args = list(sys.argv) if argv is None else ['perception_node', *argv]
    if '--ros-args' in args:
        plain = args[1:args.index('--ros-args')]
    else:
        plain = args[1:]
    if '-h' in plain or '--help' in plain:
        print(_usage())
        return 0
    if plain:
        print(f'perception_node: unexpected arguments {plain} (ROS arguments go after --ros-args)\n',
              file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2

    import logging
    import signal

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from ros_pgpt.ros.perception_node import HAVE_LIFECYCLE, PerceptionNode

    # The inference thread hands the GIL back and forth with ONNX Runtime dozens of times a query; under
    # a flood of requests the executor thread holds it meanwhile, and each hand-back waits a switch
    # interval (5 ms by default). A shorter one keeps queries and standing runs near their idle speed.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    # The runtime logs in Python logging (backend choice, export progress): show it beside rclpy's lines.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('[%(levelname)s] [%(name)s]: %(message)s'))
    logging.getLogger('ros_pgpt').addHandler(handler)
    logging.getLogger('ros_pgpt').setLevel(logging.INFO)
    # Our own SIGINT/SIGTERM handling: rclpy's would invalidate the context at once, while the
    # worker may still be publishing. Here the executor keeps spinning until the node has stopped
    # serving and answered what it holds; only then do publishers and the context go away.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = PerceptionNode()
        if node.get_parameter('autostart').value:
            if not node.start():
                print(f'perception_node: configure failed: {node.last_error}', file=sys.stderr)
                return 1
        elif HAVE_LIFECYCLE:
            node.get_logger().info('autostart is false: waiting for lifecycle transitions on '
                                   f'{node.get_fully_qualified_name()}/change_state')
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
        node.get_logger().info('shutting down: finishing the query in flight, answering waiting ones')
        node.stop_serving()
        deadline = time.monotonic() + FLUSH_S  # send the answers the worker just completed
        while time.monotonic() < deadline and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
        executor.shutdown(timeout_sec=1.0)
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
