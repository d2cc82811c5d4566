"""The ros_pgpt perception node and its entry point.

    ros2 run ros_pgpt perception_node [--ros-args ...]     # with a ROS install
    ros-pgpt node [--ros-args ...]                         # the venv route

``main`` is imported by ``scripts/perception_node`` and by ``ros-pgpt node``.
rclpy and the model are imported only when it runs. See docs/NODE.md.
"""
from __future__ import annotations

import sys

USAGE = """usage: ros-pgpt node [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] [-r FROM:=TO ...]]

Starts the ros_pgpt perception node (default name "ros_pgpt"): service ~/query
(ros_pgpt/srv/Query), topics ~/detections (ros_pgpt/msg/GroundedObjectArray),
~/overlay (sensor_msgs/Image), camera input "image" or "image/compressed"
(remap, e.g. -r image:=/camera/image_raw).

parameters:
"""


def _usage() -> str:
    from ros_pgpt.node.params import PARAMS

    lines = [USAGE]
    for p in PARAMS:
        lines.append(f'  {p.name} ({p.kind}, default {p.default!r}): {p.description}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the node until SIGINT/shutdown; returns an exit code (1 when configure failed)."""
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

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from ros_pgpt.node.perception_node import HAVE_LIFECYCLE, PerceptionNode

    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = PerceptionNode()
        if node.get_parameter('autostart').value:
            if not node.start():
                print(f'perception_node: configure failed: {node.last_error}', file=sys.stderr)
                return 1
        elif HAVE_LIFECYCLE:
            node.get_logger().info('autostart is false: waiting for lifecycle transitions on '
                                   f'{node.get_fully_qualified_name()}/change_state')
        executor = MultiThreadedExecutor(num_threads=node.get_parameter('queue_size').value + 4)
        executor.add_node(node)
        try:
            executor.spin()
        finally:
            executor.shutdown(timeout_sec=1.0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
