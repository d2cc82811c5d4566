#!/usr/bin/env python3
"""Size of a recorded bag of detections with full-frame and with cropped masks (docs/NODE.md, "Lighter masks").

    .venv/bin/python scripts/mask_bag_size.py [--results 8] [--prompt "point to every shape"] [--out DIR] [--domain-id N]

Starts the perception node (config/perception.yaml) in a private ROS world,
records its ~/detections with ``ros_pgpt.ros.bags.record`` (what ``ros-pgpt
record`` runs) while asking the prompt with masks on N generated 640x480
scenes (seeds 0..N-1): once with full_frame_masks (the old behaviour), once
with the default cropped masks, one bag each. Prints the bags' sizes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def bag_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())


def record_queries(out: Path, client, images, prompt: str, full_frame_masks: bool, context) -> int:
    """Record ~/detections into ``out`` while asking ``prompt`` on each image; returns objects found."""
    from ros_pgpt.ros.bags import record
    from ros_pgpt.ros.query import build_request

    stop, ready, lines = threading.Event(), threading.Event(), []

    def log(line):
        lines.append(line)
        if 'recording' in line:
            ready.set()
    recorder = threading.Thread(target=record, args=(out, ['/ros_pgpt/detections']),
                                kwargs={'context': context, 'log': log, 'stop': stop.is_set})
    recorder.start()
    if not ready.wait(30):
        raise RuntimeError(f'the recorder did not start: {lines}')
    deadline = time.monotonic() + 30
    while client.node.count_subscribers('/ros_pgpt/detections') == 0 and time.monotonic() < deadline:
        client.spin(0.1)
    client.spin(1.0)  # the node's publisher matches the recorder's subscription too
    objects = 0
    for image in images:
        response, _ = client.call(build_request(prompt, image=image, masks=True, full_frame_masks=full_frame_masks),
                                  120.0)
        if response is None or not response.success:
            raise RuntimeError(f'query failed: {response and response.message}')
        objects += len(response.result.objects)
    client.spin(1.0)  # the last results reach the recorder
    stop.set()
    recorder.join(30)
    print(lines[-1])
    return objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--results', type=int, default=8, help='queries (recorded results) per bag (default 8)')
    parser.add_argument('--prompt', default='point to every shape')
    parser.add_argument('--out', metavar='DIR', help='write the bags (and node.log) here instead of a temp folder')
    parser.add_argument('--domain-id', type=int, help='ROS_DOMAIN_ID of the private ROS world (default: random)')
    args = parser.parse_args()

    import rclpy

    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.ros.launcher import isolated_env, node_command
    from ros_pgpt.ros.query import QueryClient

    out = Path(args.out or tempfile.mkdtemp(prefix='mask_bag_size_'))
    out.mkdir(parents=True, exist_ok=True)
    env = isolated_env(out / 'ros_home', args.domain_id)
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_HOME', 'ROS_LOG_DIR')})
    generator = SceneGenerator(resolutions=[(640, 480)])
    images = [generator.sample(seed).scene.image for seed in range(args.results)]
    with open(out / 'node.log', 'w') as log:
        node = subprocess.Popen(node_command(), env=env, stdout=log, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context, args=[])
    client = QueryClient(context=context)
    try:
        if not client.wait(300, alive=lambda: node.poll() is None):
            print(f'the node did not start; see {out / "node.log"}', file=sys.stderr)
            return 1
        sizes = {}
        for full in (True, False):
            name = 'full_frame_masks' if full else 'cropped_masks'
            objects = record_queries(out / name, client, images, args.prompt, full, context)
            sizes[name] = bag_bytes(out / name)
            print(f'{name}: {sizes[name] / 1e6:.3f} MB ({args.results} results, {objects} objects, 640x480, '
                  f'"{args.prompt}") in {out / name}')
        print(f'cropped / full-frame: {sizes["cropped_masks"] / sizes["full_frame_masks"]:.3f}')
        return 0
    finally:
        client.close()
        rclpy.try_shutdown(context=context)
        node.send_signal(2)
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()


if __name__ == '__main__':
    raise SystemExit(main())
