"""ros_pgpt.ros.outputs: GroundedObjectArray -> vision_msgs and RViz markers (messages only, no node)."""
import math

import pytest

from ros_pgpt.ros.depth import DEPTH_MISSING, DEPTH_NONE, DEPTH_OK, DEPTH_SPARSE
from ros_pgpt.msg import GroundedObject, GroundedObjectArray
from ros_pgpt.ros.outputs import detection_2d_array, detection_3d_array, marker_array


def result(statuses):
    """A result with one object per status; objects with 3D sit at z = 1, 2, ... m."""
    msg = GroundedObjectArray(prompt='every shape')
    msg.header.frame_id, msg.header.stamp.sec = 'camera_color_optical_frame', 42
    for i, status in enumerate(statuses):
        obj = GroundedObject(phrase=f'shape {i}', score=0.5 + 0.1 * i, x_min=10.0 * i, y_min=5.0, x_max=10.0 * i + 8,
                             y_max=25.0, depth_status=status)
        if status in (DEPTH_OK, DEPTH_SPARSE):
            obj.depth = float(i + 1)
            obj.centroid.x, obj.centroid.z = 0.1, float(i + 1)
            obj.extent.x, obj.extent.y, obj.extent.z = 0.2, 0.3, 0.0
            obj.extent_center.x, obj.extent_center.z = 0.12, float(i + 1)
        elif status == DEPTH_MISSING:
            obj.depth = obj.centroid.z = math.nan
        msg.objects.append(obj)
    return msg


def test_2d_boxes_in_source_pixels_with_the_phrase():
    det = detection_2d_array(result([DEPTH_NONE, DEPTH_OK]))
    assert det.header.frame_id == 'camera_color_optical_frame' and det.header.stamp.sec == 42
    first, second = det.detections
    assert first.results[0].hypothesis.class_id == 'shape 0'
    assert first.results[0].hypothesis.score == pytest.approx(0.5)
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (4.0, 15.0)
    assert (first.bbox.size_x, first.bbox.size_y, first.bbox.center.theta) == (8.0, 20.0, 0.0)
    assert first.results[0].pose.pose.position.z == 0.0  # no 3D: the origin
    assert second.results[0].pose.pose.position.z == 2.0 and second.results[0].pose.pose.orientation.w == 1.0


def test_tracked_objects_carry_their_track_id():
    msg = result([DEPTH_OK, DEPTH_OK])
    msg.objects[0].track_id = 7  # a standing-prompt object; the second is untracked (0)
    assert [d.id for d in detection_2d_array(msg).detections] == ['7', '']
    assert [d.id for d in detection_3d_array(msg).detections] == ['7', '']


def test_3d_only_objects_with_depth():
    det = detection_3d_array(result([DEPTH_NONE, DEPTH_OK, DEPTH_MISSING, DEPTH_SPARSE]))
    assert [d.results[0].hypothesis.class_id for d in det.detections] == ['shape 1', 'shape 3']
    box = det.detections[0].bbox
    assert (box.center.position.x, box.center.position.z, box.center.orientation.w) == (0.12, 2.0, 1.0)
    assert (box.size.x, box.size.y, box.size.z) == (0.2, 0.3, 0.0)


def test_markers_replace_the_prompts_last_ones():
    from visualization_msgs.msg import Marker

    markers = marker_array(result([DEPTH_OK, DEPTH_MISSING, DEPTH_OK])).markers
    assert [(m.id, m.type, m.action) for m in markers] == [
        (0, Marker.CUBE, Marker.ADD), (1, Marker.TEXT_VIEW_FACING, Marker.ADD),
        (2, Marker.CUBE, Marker.ADD), (3, Marker.TEXT_VIEW_FACING, Marker.ADD)]
    assert all(m.ns == 'every shape' and m.header.frame_id == 'camera_color_optical_frame' for m in markers)
    assert markers[0].scale.z > 0, 'a flat object still gets a visible box'
    assert markers[1].text == 'shape 0 0.50 1.00 m'
    # the next result of the prompt has one object: the last result's two others are deleted
    markers = marker_array(result([DEPTH_OK]), previous=4).markers
    assert [(m.id, m.action) for m in markers] == [(0, Marker.ADD), (1, Marker.ADD), (2, Marker.DELETE),
                                                   (3, Marker.DELETE)]
