"""Peer process for the cross-process tests (run by tests/test_ros_ipc.py).

Offers a ros_pgpt/srv/Query service that echoes the request back in a
predictable way, and publishes a fully filled GroundedObjectArray on a topic
every 50 ms until stopped with SIGINT. Prints "ready" once both exist.
"""
import argparse
import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from ros_pgpt.msg import GroundedObject, GroundedObjectArray
from ros_pgpt.srv import Query


def make_result(prompt, image=None):
    """The GroundedObjectArray the peer sends (the test rebuilds it to compare)."""
    result = GroundedObjectArray()
    result.header.frame_id = 'peer_camera'
    result.header.stamp.sec = 1234
    result.header.stamp.nanosec = 5678
    result.prompt = prompt
    result.answer = f'echo: {prompt}'
    result.visual_tokens = 144
    obj = GroundedObject(phrase=prompt, score=0.75, x_min=1.0, y_min=2.0, x_max=30.5, y_max=40.25)
    if image is not None:
        obj.mask = image  # echo the request's image as the "mask"
    else:
        obj.mask.header = result.header
        obj.mask.height, obj.mask.width, obj.mask.step = 3, 4, 4
        obj.mask.encoding = 'mono8'
        obj.mask.data = bytes([0, 255, 255, 0] * 3)
    result.objects = [obj, GroundedObject(phrase='second', score=0.25)]
    (result.preprocess_ms, result.vision_ms, result.prefill_ms, result.decode_ms,
     result.perception_ms, result.postprocess_ms, result.total_ms) = (1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 24.0)
    result.frame_cached = True
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--service', required=True)
    parser.add_argument('--topic', required=True)
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node('ros_pgpt_test_peer')

    def handle(request, response):
        if not request.prompt:
            response.success = False
            response.message = 'empty prompt'
            return response
        response.success = True
        response.result = make_result(request.prompt, request.image if request.masks else None)
        response.result.visual_tokens = request.visual_tokens
        return response

    node.create_service(Query, args.service, handle)
    pub = node.create_publisher(GroundedObjectArray, args.topic, 10)
    msg = make_result('published')
    node.create_timer(0.05, lambda: pub.publish(msg))
    print('ready', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
