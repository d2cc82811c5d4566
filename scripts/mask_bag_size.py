#!/usr/bin/env python3
"""Size of a bag of detections with full-frame and with cropped masks (docs/NODE.md, "Lighter masks").

    .venv/bin/python scripts/mask_bag_size.py [--results 8] [--prompt "point to every shape"] [--keep DIR]

Grounds the prompt with masks on generated 640x480 scenes (seeds 0..N-1)
with the default checkpoint, turns each result into the node's
GroundedObjectArray twice (full_frame_masks true and false, as the node
does), writes each set into an mcap bag with the project's typestore, and
prints the bags' sizes on disk.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def bag_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--results', type=int, default=8, help='results (messages) per bag (default 8)')
    parser.add_argument('--prompt', default='point to every shape')
    parser.add_argument('--keep', metavar='DIR', help='write the bags here instead of a temporary folder')
    args = parser.parse_args()

    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from std_msgs.msg import Header

    from ros_pgpt import ros_io
    from ros_pgpt.bags import typestore
    from ros_pgpt.data import SceneGenerator
    from ros_pgpt.runtime import create_predictor

    predictor = create_predictor()
    generator = SceneGenerator(resolutions=[(640, 480)])
    results = [predictor.ground(generator.sample(seed).scene.image, args.prompt, masks=True)
               for seed in range(args.results)]
    objects = sum(len(r.objects) for r in results)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='mask_bag_size_'))
    store = typestore()
    for full in (True, False):
        path = out / ('full_frame_masks' if full else 'cropped_masks')
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            conn = writer.add_connection('/ros_pgpt/detections', 'ros_pgpt/msg/GroundedObjectArray', typestore=store)
            for i, result in enumerate(results):
                header = Header(frame_id='camera')
                header.stamp.sec = i
                msg = ros_io.result_to_msg(result, header, full_frame_masks=full)
                writer.write(conn, i, serialize_message(msg))
        print(f'{"full-frame" if full else "cropped":>10} masks: {bag_bytes(path) / 1e6:.3f} MB '
              f'({args.results} results, {objects} objects, 640x480) {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
