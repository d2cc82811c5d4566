"""``ros-pgpt query "prompt"``: call the perception node's Query service and print a table.

    ros-pgpt query "where is the red star?"                   # on the latest camera frame
    ros-pgpt query "every circle" --image scene.png --masks --save overlay.png
    ros-pgpt query "the red star" --masks --full-frame-masks   # masks of the whole image, not box crops
    ros-pgpt query "the small blue square" --tokens 16 --timeout 30
    ros-pgpt query "what is in <box>?" --box 100 80 220 200    # a region of the image, in pixels
    ros-pgpt query "the red star" --image rgb.png --depth depth.png --intrinsics 525 525 319.5 239.5
                                         # 3D: a registered 16-bit PNG in mm (or .npy, metres) and its fx fy cx cy

Exit status: 0 success (no objects found is a success), 1 the node answered success=false
(message printed), 3 no service / no answer within --timeout, 4 the prompt uses words the
model does not know (the node refused it; the message names them, see ros_pgpt/data/PHRASING.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from ros_pgpt.data.wording import EXIT_UNKNOWN_WORDS, UnknownWords
from ros_pgpt.ros.depth import DEPTH_MISSING, DEPTH_NONE, DEPTH_SPARSE

DEFAULT_SERVICE = '/ros_pgpt/query'
# Fast DDS hands every response of a service to every client's reader, which keeps the newest N
# (default 10): with many clients answered fast ("busy", ~200/s), a client the OS does not run for a
# while loses its own answer. Measured on an overloaded 2-core machine: 15 calls of 3100 lost at depth
# 10, none of 4300 at 1000; at 100, one of 3900 in a CI run. Responses are small (cropped masks).
RESPONSE_HISTORY_DEPTH = 1000


def format_result(result, round_trip_ms: float | None = None) -> str:
    """A GroundedObjectArray as a human-readable table (mask px: pixels on the object, crop or full frame)."""
    from ros_pgpt.ros.conversions import mask_from_image_msg

    lines = [f'prompt: {result.prompt!r}   answer: {result.answer!r}   visual tokens: {result.visual_tokens}'
             f'   frame cached: {"yes" if result.frame_cached else "no"}'
             f'{"   (object refused by the match head)" if result.rejected else ""}',
             f'frame: {result.header.frame_id or "-"} @ {result.header.stamp.sec}.{result.header.stamp.nanosec:09d}']
    with_3d = any(obj.depth_status != DEPTH_NONE for obj in result.objects)
    if result.objects:
        lines.append(f'{"#":>2}  {"phrase":<32} {"score":>5}  {"box x0, y0, x1, y1 (px)":<26} {"mask px":>8}'
                     + ('  centroid x, y, z (m)' if with_3d else ''))
        for i, obj in enumerate(result.objects, 1):
            mask = mask_from_image_msg(obj.mask)
            mask_px = '-' if mask is None else str(int(mask.sum()))
            box = f'{obj.x_min:6.1f},{obj.y_min:6.1f},{obj.x_max:6.1f},{obj.y_max:6.1f}'
            lines.append(f'{i:>2}  {obj.phrase[:32]:<32} {obj.score:5.2f}  {box:<26} {mask_px:>8}'
                         + (f'  {_position(obj)}' if with_3d else ''))
    else:
        lines.append('no objects')
    stages = ' '.join(f'{s} {getattr(result, s + "_ms"):.1f}' for s in
                      ('preprocess', 'vision', 'prefill', 'decode', 'perception', 'postprocess'))
    rt = f'round trip {round_trip_ms:.1f} ms; ' if round_trip_ms is not None else ''
    lines.append(f'latency: {rt}node total {result.total_ms:.1f} ms ({stages})')
    return '\n'.join(lines)


def _position(obj) -> str:
    """An object's 3D centroid as the table shows it, flagged when its depth was sparse or missing."""
    if obj.depth_status == DEPTH_MISSING:
        return 'no depth under the object'
    c = obj.centroid
    xyz = f'{c.x:6.3f},{c.y:6.3f},{c.z:6.3f}'
    return xyz + (f' (sparse: {obj.depth_valid_fraction:.0%} of pixels)' if obj.depth_status == DEPTH_SPARSE else '')


class QueryClient:
    """A small rclpy client of the Query service (own context; also used by the demo and tests).

    ``service_type`` makes it a client of another service of the node (``ros-pgpt prompts`` uses SetPrompts).
    """

    def __init__(self, service: str = DEFAULT_SERVICE, *, overlay_topic: str | None = None,
                 node_name: str = 'ros_pgpt_query_client', context=None, domain_id: int | None = None,
                 service_type=None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from ros_pgpt.srv import Query

        self._own_context = context is None
        self.context = context or rclpy.Context()
        if self._own_context:
            kwargs = {} if domain_id is None else {'domain_id': domain_id}
            rclpy.init(context=self.context, args=[], **kwargs)
        self.node = rclpy.create_node(f'{node_name}_{os.getpid()}', context=self.context)
        self.client = self.node.create_client(service_type or Query, service, qos_profile=QoSProfile(
            depth=RESPONSE_HISTORY_DEPTH, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.overlays = []
        if overlay_topic:
            from rclpy.qos import QoSProfile, ReliabilityPolicy
            from sensor_msgs.msg import Image
            self.node.create_subscription(Image, overlay_topic, self.overlays.append,
                                          QoSProfile(depth=4, reliability=ReliabilityPolicy.RELIABLE))

    def wait(self, timeout: float, alive=None) -> bool:
        """Wait for the service; ``alive()`` returning False aborts early."""
        deadline = time.monotonic() + timeout
        while not self.client.service_is_ready():
            if time.monotonic() > deadline or (alive is not None and not alive()):
                return False
            self.executor.spin_once(timeout_sec=0.1)
        return True

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))

    def call(self, request, timeout: float = 60.0):
        """(response or None on timeout, round-trip ms)."""
        t0 = time.perf_counter()
        future = self.client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        ms = (time.perf_counter() - t0) * 1e3
        if not future.done():
            self.client.remove_pending_request(future)
            return None, ms
        return future.result(), ms

    def close(self):
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)


def build_request(prompt: str, *, image=None, masks: bool = False, tokens: int = 0, boxes=(),
                  frame_id: str = 'image', full_frame_masks: bool = False, depth=None, intrinsics=None):
    """A Query request; ``boxes`` (x_min, y_min, x_max, y_max in pixels) fill the prompt's "<box>"s.

    ``depth`` (HxW uint16 mm or float32 m, registered to the image) and ``intrinsics`` (depth.Intrinsics)
    ask for 3D; without intrinsics the node uses its camera_info topic.
    """
    from ros_pgpt.ros.conversions import rgb_to_image_msg
    from ros_pgpt.ros.depth import camera_info_msg, depth_to_msg
    from ros_pgpt.srv import Query

    request = Query.Request(prompt=prompt, visual_tokens=int(tokens), masks=bool(masks),
                            full_frame_masks=bool(full_frame_masks), boxes=[float(v) for box in boxes for v in box])
    if image is not None:
        request.image = rgb_to_image_msg(image, 'rgb8')
        request.image.header.frame_id = frame_id
    if depth is not None:
        request.depth = depth_to_msg(depth, request.image.header)
    if intrinsics is not None:
        request.camera_info = camera_info_msg(intrinsics, request.image.header)
    return request


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='ros-pgpt query', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n'.join(__doc__.splitlines()[1:]))
    parser.add_argument('prompt', help='what to find, e.g. "where is the red star?"')
    parser.add_argument('--image', metavar='FILE', help='ground this image file instead of the latest camera frame')
    parser.add_argument('--masks', action='store_true', help='ask for pixel masks')
    parser.add_argument('--full-frame-masks', action='store_true',
                        help='masks of the whole image instead of crops of each object\'s box')
    parser.add_argument('--box', nargs=4, type=float, action='append', default=[],
                        metavar=('X_MIN', 'Y_MIN', 'X_MAX', 'Y_MAX'),
                        help='a box in image pixels for the next "<box>" in the prompt (repeat per box)')
    parser.add_argument('--tokens', type=int, default=0, metavar='N', help='visual tokens (0 = node default)')
    parser.add_argument('--depth', metavar='FILE',
                        help='depth registered to the image, for 3D: a 16-bit PNG in millimetres or a .npy in metres')
    parser.add_argument('--intrinsics', nargs=4, type=float, metavar=('FX', 'FY', 'CX', 'CY'),
                        help="the depth image's pinhole intrinsics in its pixels (default: the node's camera_info)")
    parser.add_argument('--save', metavar='PNG', help='write an overlay (boxes, masks, phrases) to this file')
    parser.add_argument('--timeout', type=float, default=30.0, metavar='S',
                        help='seconds to wait for the service and for the answer (default 30)')
    parser.add_argument('--service', default=DEFAULT_SERVICE, help=f'service name (default {DEFAULT_SERVICE})')
    args = parser.parse_args(argv)
    if args.tokens < 0 or args.tokens > 65535:
        parser.error('--tokens must be in 0..65535')

    from ros_pgpt.ros import conversions
    from ros_pgpt.ros.depth import DepthError, Intrinsics, read_depth_file

    if args.intrinsics and not args.depth:
        parser.error('--intrinsics describe the --depth image; give one')
    image = conversions.read_image_file(args.image) if args.image else None
    try:
        depth = read_depth_file(args.depth) if args.depth else None
    except DepthError as error:
        parser.error(str(error))
    intrinsics = Intrinsics(*args.intrinsics, width=depth.shape[1], height=depth.shape[0]) if args.intrinsics else None
    # Without --image the pixels are only on the node: take its ~/overlay for --save.
    overlay_topic = None
    if args.save and image is None:
        overlay_topic = args.service.rsplit('/', 1)[0] + '/overlay'
    client = QueryClient(args.service, overlay_topic=overlay_topic)
    try:
        if not client.wait(args.timeout):
            print(f'ros-pgpt query: service {args.service} not available within {args.timeout:g} s '
                  f'(is the node running, on the same ROS_DOMAIN_ID?)', file=sys.stderr)
            return 3
        if overlay_topic:
            client.spin(0.5)  # let the overlay subscription match
        request = build_request(args.prompt, image=image, masks=args.masks, tokens=args.tokens, boxes=args.box,
                                full_frame_masks=args.full_frame_masks, depth=depth, intrinsics=intrinsics)
        response, ms = client.call(request, args.timeout)
        if response is None:
            print(f'ros-pgpt query: no answer from {args.service} within {args.timeout:g} s', file=sys.stderr)
            return 3
        if not response.success:
            print(f'query failed: {response.message}', file=sys.stderr)
            return EXIT_UNKNOWN_WORDS if response.message.startswith(UnknownWords.PREFIX) else 1
        print(format_result(response.result, ms))
        if args.save:
            result = response.result
            if image is not None:
                out = conversions.draw_overlay(image, conversions.detections_from_msg(result), title=result.prompt)
            else:
                deadline = time.monotonic() + 3.0
                match = None
                while match is None and time.monotonic() < deadline:
                    client.spin(0.05)
                    match = next((m for m in reversed(client.overlays) if m.header == result.header), None)
                if match is None:
                    print('ros-pgpt query: the node published no overlay for this frame; nothing saved',
                          file=sys.stderr)
                    return 1
                out = conversions.image_msg_to_rgb(match)
            conversions.write_image_file(args.save, out)
            print(f'overlay written to {args.save}')
        return 0
    finally:
        client.close()


if __name__ == '__main__':
    sys.exit(main())
