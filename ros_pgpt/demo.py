"""``ros-pgpt demo``: placeholder demo that runs what exists so far.

1. prints ``ros-pgpt info``;
2. serialises a Query request and a full GroundedObjectArray (with a mask)
   through rclpy's CDR serialisation and checks they come back equal;
3. starts a Query service and a client in this process and makes one call
   over the real middleware (loopback). The service answers with a
   placeholder "grounding" (the bright region of a synthetic image), NOT a
   model: the perception node replaces this demo.
"""
import argparse
import os
import sys
import time

import numpy as np

from ros_pgpt import info as _info


def synthetic_image(width=96, height=64):
    """rgb8 image (H, W, 3): dark background with one bright rectangle."""
    img = np.full((height, width, 3), 30, dtype=np.uint8)
    img[16:40, 24:60] = (250, 240, 230)
    return img


def to_image_msg(array, encoding='rgb8', frame_id='demo_camera'):
    from sensor_msgs.msg import Image
    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    msg.step = msg.width * channels * array.dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()  # bytes: ~500x faster than an ndarray
    return msg


def from_image_msg(msg):
    channels = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}[msg.encoding]
    arr = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    arr = arr[:, :msg.width * channels].reshape(msg.height, msg.width, channels)
    return arr[:, :, 0] if channels == 1 else arr


def placeholder_ground(request):
    """Answer a Query without a model: box + mask of the bright pixels."""
    from ros_pgpt.msg import GroundedObject
    from ros_pgpt.srv import Query

    t0 = time.perf_counter()
    response = Query.Response()
    if request.image.width == 0 or request.image.height == 0:
        response.success = False
        response.message = 'the demo service needs an image in the request (it has no camera topic)'
        return response
    img = from_image_msg(request.image)
    gray = img if img.ndim == 2 else img.mean(axis=2)
    bright = gray > 200
    result = response.result
    result.header = request.image.header
    result.prompt = request.prompt
    result.visual_tokens = request.visual_tokens or 64
    if bright.any():
        ys, xs = np.nonzero(bright)
        obj = GroundedObject()
        obj.phrase = request.prompt
        obj.score = 1.0
        obj.x_min, obj.y_min = float(xs.min()), float(ys.min())
        obj.x_max, obj.y_max = float(xs.max() + 1), float(ys.max() + 1)
        if request.masks:
            obj.mask = to_image_msg(bright.astype(np.uint8) * 255, 'mono8', request.image.header.frame_id)
            obj.mask.header = request.image.header
        result.objects = [obj]
        result.answer = f'placeholder (no model yet): one bright region for "{request.prompt}"'
    else:
        result.answer = 'placeholder (no model yet): nothing bright found'
    # float32 fields: store a float32-exact value so a round trip compares equal.
    result.total_ms = result.postprocess_ms = float(np.float32((time.perf_counter() - t0) * 1e3))
    response.success = True
    return response


def serialization_round_trip():
    """Round-trip a request and a filled result through CDR; return sizes."""
    from rclpy.serialization import deserialize_message, serialize_message
    from ros_pgpt.msg import GroundedObjectArray
    from ros_pgpt.srv import Query

    req = Query.Request(prompt='the white box', visual_tokens=64, masks=True,
                        image=to_image_msg(synthetic_image()))
    req_bytes = serialize_message(req)
    back = deserialize_message(req_bytes, Query.Request)
    assert back == req, 'Query.Request changed in a serialization round trip'

    result = placeholder_ground(req).result
    res_bytes = serialize_message(result)
    back = deserialize_message(res_bytes, GroundedObjectArray)
    assert back == result, 'GroundedObjectArray changed in a serialization round trip'
    return len(req_bytes), len(res_bytes), result


def service_round_trip(timeout=15.0):
    """One Query call between a service and a client node in this process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from ros_pgpt.srv import Query

    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        name = f'/ros_pgpt_demo_{os.getpid()}/query'
        server = rclpy.create_node('ros_pgpt_demo_server', context=ctx)
        client_node = rclpy.create_node('ros_pgpt_demo_client', context=ctx)
        server.create_service(Query, name, lambda req, resp: placeholder_ground(req))
        client = client_node.create_client(Query, name)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(server)
        executor.add_node(client_node)

        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f'service {name} not discovered within {timeout} s')
            executor.spin_once(timeout_sec=0.05)

        req = Query.Request(prompt='the white box', masks=True, image=to_image_msg(synthetic_image()))
        t0 = time.perf_counter()
        future = client.call_async(req)
        executor.spin_until_future_complete(future, timeout_sec=max(0.1, deadline - time.monotonic()))
        if not future.done():
            raise TimeoutError(f'no response from {name} within {timeout} s')
        return future.result(), (time.perf_counter() - t0) * 1e3
    finally:
        rclpy.try_shutdown(context=ctx)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='ros-pgpt demo', description=__doc__.splitlines()[0])
    parser.add_argument('--timeout', type=float, default=15.0, help='discovery/call timeout, seconds')
    args = parser.parse_args(argv)

    print('== ros-pgpt info')
    facts = _info.collect()
    print(_info.format_info(facts))
    if not facts.get('rclpy') or not facts.get('interfaces'):
        print('\ndemo: rclpy or the ros_pgpt interfaces are not importable; run scripts/setup.sh',
              file=sys.stderr)
        return 1

    print('\n== serialization round trip (rclpy CDR)')
    n_req, n_res, result = serialization_round_trip()
    print(f'Query.Request {n_req} bytes, GroundedObjectArray {n_res} bytes: equal after round trip')

    print('\n== Query service call over the middleware (loopback, placeholder answer)')
    response, ms = service_round_trip(args.timeout)
    if not response.success:
        print(f'service failed: {response.message}', file=sys.stderr)
        return 1
    res = response.result
    print(f'answer: {res.answer}')
    for obj in res.objects:
        mask_px = int(np.count_nonzero(from_image_msg(obj.mask))) if obj.mask.width else 0
        print(f'  "{obj.phrase}" score {obj.score:.2f} box ({obj.x_min:.0f}, {obj.y_min:.0f}, '
              f'{obj.x_max:.0f}, {obj.y_max:.0f}) mask {obj.mask.width}x{obj.mask.height} '
              f'{obj.mask.encoding}, {mask_px} px on')
    print(f'round trip {ms:.1f} ms')
    print('\ndemo OK (placeholder: the model-backed perception node replaces this demo)')
    return 0
