"""ros_pgpt.ros.tracking: stable ids for standing-prompt objects (no middleware, no model)."""
import numpy as np

from ros_pgpt.data.geometry import box_iou
from ros_pgpt.ros.tracking import Observation, Tracker, placed_mask_iou


def box(x, y, size=40):
    return (x, y, x + size, y + size)


def test_moving_objects_keep_their_ids_and_new_ones_get_new_ids():
    tracker = Tracker(min_iou=0.3, memory=3)
    first = tracker.update('every star', [Observation(box(10, 10)), Observation(box(200, 100))])
    assert first == [1, 2]
    for step in range(1, 20):  # 15 px a run: IoU with the last box alone drops to 0.45, the prediction keeps it high
        ids = tracker.update('every star', [Observation(box(200 - 5 * step, 100)), Observation(box(10 + 15 * step, 10))])
        assert ids == [2, 1], step
    assert tracker.update('every star', [Observation(box(10 + 15 * 20, 10)), Observation(box(500, 400))]) == [1, 3]


def test_fast_motion_is_followed_through_the_prediction():
    # Speeding up to 30 px a run with a 40 px box: consecutive boxes overlap by IoU 0.14 only.
    xs = np.cumsum([0, 15, 20, 25, 30, 30, 30, 30, 30])
    tracker = Tracker(min_iou=0.3, memory=3)
    assert {tracker.update('p', [Observation(box(x, 0))])[0] for x in xs} == {1}
    assert box_iou(box(xs[-2], 0), box(xs[-1], 0)) < 0.3, 'only the prediction overlaps enough'


def test_memory_bridges_missed_runs_then_forgets():
    tracker = Tracker(min_iou=0.3, memory=2)
    assert tracker.update('p', [Observation(box(10, 10))]) == [1]
    assert tracker.update('p', []) == []
    assert tracker.update('p', []) == []
    assert tracker.update('p', [Observation(box(12, 10))]) == [1], 'missed twice with memory 2: same id'
    for _ in range(3):
        tracker.update('p', [])
    assert tracker.update('p', [Observation(box(12, 10))]) == [2], 'missed three times: forgotten, a new id'


def test_prompts_have_their_own_tracks():
    tracker = Tracker()
    assert tracker.update('the red star', [Observation(box(10, 10))]) == [1]
    assert tracker.update('every star', [Observation(box(10, 10))]) == [2]
    assert tracker.update('the red star', [Observation(box(11, 10))]) == [1]
    tracker.keep_only(['every star'])
    assert tracker.update('the red star', [Observation(box(11, 10))]) == [3], 'a prompt removed and added again starts over'
    assert tracker.update('every star', [Observation(box(11, 10))]) == [2]


def test_masks_decide_where_boxes_overlap():
    # Two thin diagonal objects in nearly the same box: the box IoU cannot tell them apart, the masks can.
    size = 40
    down = np.any([np.eye(size, k=k, dtype=bool) for k in range(4)], axis=0)
    up = down[::-1]
    tracker = Tracker(min_iou=0.3)
    ids = tracker.update('p', [Observation(box(0, 0), down, (0, 0)), Observation(box(0, 0), up, (0, 0))])
    again = tracker.update('p', [Observation(box(1, 0), up, (1, 0)), Observation(box(1, 0), down, (1, 0))])
    assert again == ids[::-1]


def test_placed_mask_iou():
    a = Observation(box(0, 0, 4), np.ones((4, 4), bool), (0, 0))
    b = Observation(box(2, 0, 4), np.ones((4, 4), bool), (2, 0))
    assert placed_mask_iou(a, b) == 8 / 24
    far = Observation(box(10, 10, 4), np.ones((4, 4), bool), (10, 10))
    assert placed_mask_iou(a, far) == 0.0
