"""Render docs/images/markers_3d.png from a real run of the node (not part of the test suite).

    .venv/bin/python scripts/markers_figure.py [OUT.png]

Starts the node (tests/node_support.py), sends the scene of
tests/test_node_3d.py with its depth image through ~/query, and draws what the
node published: ~/overlay (left) and the ~/markers boxes and labels in the
camera's optical frame (right, seen from above and behind the camera).
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))

from node_support import NodeUnderTest  # noqa: E402
import test_node_3d as scene3d  # noqa: E402


def box_edges(center, size):
    """The 12 edges of an axis-aligned box, as pairs of 3D points."""
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size / 2 + center
    return [(corners[i], corners[j]) for i in range(8) for j in range(i + 1, 8)
            if np.count_nonzero(corners[i] != corners[j]) == 1]


def main(out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import Marker, MarkerArray

    from ros_pgpt.ros.conversions import image_msg_to_rgb

    world = scene3d.make_world()
    with tempfile.TemporaryDirectory() as tmp, NodeUnderTest(Path(tmp)) as node:
        got = {'markers': [], 'overlay': []}
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.ros.create_subscription(MarkerArray, f'{node.ns}/ros_pgpt/markers', got['markers'].append, reliable)
        node.ros.create_subscription(Image, f'{node.ns}/ros_pgpt/overlay', got['overlay'].append, reliable)
        node.spin(1.0)
        response = scene3d.inline_query(node, world, '16UC1', (320, 240), (640, 480), (1, 0), masks=True)
        assert response.success, response.message
        node.spin_until(lambda: got['markers'] and got['overlay'], 20.0, 'markers and overlay')
    overlay = image_msg_to_rgb(got['overlay'][0])
    markers = got['markers'][0].markers

    fig = plt.figure(figsize=(13, 5.2))
    ax_img = fig.add_subplot(1, 2, 1)
    ax_img.imshow(overlay)
    ax_img.set_title('~/overlay (16UC1 depth at 320x240, colour 640x480)')
    ax_img.axis('off')
    ax = fig.add_subplot(1, 2, 2, projection='3d')
    for box in (m for m in markers if m.type == Marker.CUBE and m.action == Marker.ADD):
        center = np.array([box.pose.position.x, box.pose.position.y, box.pose.position.z])
        size = np.array([box.scale.x, box.scale.y, box.scale.z])
        for a, b in box_edges(center, size):  # plotted as (x, z, -y): z forward, y up on screen
            ax.plot([a[0], b[0]], [a[2], b[2]], [-a[1], -b[1]], color=(box.color.r, box.color.g, box.color.b))
    for label in (m for m in markers if m.type == Marker.TEXT_VIEW_FACING):
        p = label.pose.position
        ax.text(p.x, p.z, -p.y, label.text.replace('point to every shape ', ''), fontsize=8,
                color=(label.color.r, label.color.g, label.color.b))
    ax.scatter([0], [0], [0], color='k', marker='^')
    ax.set_box_aspect([np.ptp(v) for v in (ax.get_xlim(), ax.get_ylim(), ax.get_zlim())])  # metres alike
    ax.text(0, 0, 0.02, 'camera', fontsize=8)
    ax.set_xlabel('x (m, right)')
    ax.set_ylabel('z (m, forward)')
    ax.set_zlabel('-y (m, up)')
    ax.set_title('~/markers in the optical frame (hole: no box; sparse: flagged)')
    ax.view_init(elev=20, azim=-60)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    from PIL import Image as PILImage
    PILImage.open(out).convert('RGB').quantize(colors=128).save(out, optimize=True)  # 520 -> 170 KB
    print(f'wrote {out}: {len(markers)} markers; objects '
          + ', '.join(f'status {o.depth_status} z {o.centroid.z:.3f}' for o in response.result.objects))


if __name__ == '__main__':
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / 'docs' / 'images' / 'markers_3d.png')
