"""ros_pgpt.ros.conversions: image/message conversions, validation, overlays (no middleware, no model)."""
import cv2
import numpy as np
import pytest

from ros_pgpt.data.geometry import box_iou, match_boxes
from ros_pgpt.ros import conversions


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)


def _msg(array, encoding, pad=0):
    from sensor_msgs.msg import Image

    channels = 1 if array.ndim == 2 else array.shape[2]
    rows = array.reshape(array.shape[0], -1)
    padded = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    return Image(height=array.shape[0], width=array.shape[1], encoding=encoding,
                 step=array.shape[1] * channels + pad, data=padded.tobytes())


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8'])
@pytest.mark.parametrize('pad', [0, 5])
def test_every_encoding_to_rgb(rgb, encoding, pad):
    native = {'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], 'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
              'bgra8': np.dstack([rgb[:, :, ::-1], np.zeros(rgb.shape[:2], np.uint8)]),
              'mono8': rgb[:, :, 0]}[encoding]
    out = conversions.image_msg_to_rgb(_msg(np.ascontiguousarray(native), encoding, pad))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == 'mono8' else rgb
    assert np.array_equal(out, expected)


def test_round_trip_writers(rgb):
    for encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8'):
        assert np.array_equal(conversions.image_msg_to_rgb(conversions.rgb_to_image_msg(rgb, encoding)), rgb)
    png = conversions.rgb_to_compressed_msg(rgb, 'png')
    assert png.format == 'png' and np.array_equal(conversions.compressed_msg_to_rgb(png), rgb)
    jpg = conversions.compressed_msg_to_rgb(conversions.rgb_to_compressed_msg(rgb, 'jpeg'))
    assert jpg.shape == rgb.shape


@pytest.mark.parametrize('change,kind,words', [
    (dict(encoding='16UC1'), 'encoding', '16UC1'),
    (dict(encoding='bayer_rggb8'), 'encoding', 'bayer_rggb8'),
    (dict(data=b'\x00' * 10), 'data', '10 bytes'),
    (dict(step=3), 'data', 'step 3'),
    (dict(width=0), 'size', 'zero size'),
    (dict(height=5, data=b'\x00' * 600), 'size', 'too small'),
    (dict(width=20000, height=10), 'size', 'too large'),
])
def test_bad_images(rgb, change, kind, words):
    msg = conversions.rgb_to_image_msg(rgb)
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(conversions.ImageError) as err:
        conversions.image_msg_to_rgb(msg)
    assert err.value.kind == kind and words in str(err.value)


def test_pixel_limit_is_a_parameter(rgb):
    with pytest.raises(conversions.ImageError, match='max_image_pixels'):
        conversions.image_msg_to_rgb(conversions.rgb_to_image_msg(rgb), max_pixels=1000)


def test_corrupt_and_unsupported_compressed():
    from sensor_msgs.msg import CompressedImage

    with pytest.raises(conversions.ImageError, match='could not decode') as err:
        conversions.compressed_msg_to_rgb(CompressedImage(format='jpeg', data=b'\xff\xd8 not really'))
    assert err.value.kind == 'decode'
    with pytest.raises(conversions.ImageError, match='no data'):
        conversions.compressed_msg_to_rgb(CompressedImage(format='png', data=b''))
    with pytest.raises(conversions.ImageError, match='unsupported compressed format'):
        conversions.compressed_msg_to_rgb(CompressedImage(format='tiff', data=b'II*\x00'))


def test_empty_image_means_latest_frame():
    from sensor_msgs.msg import Image

    assert conversions.is_empty_image(Image())
    assert not conversions.is_empty_image(Image(width=0, height=4))


def test_cache_key_changes_with_content(rgb):
    a, b = conversions.rgb_to_image_msg(rgb), conversions.rgb_to_image_msg(rgb)
    assert conversions.image_key(a) == conversions.image_key(b)
    other = rgb.copy()
    other[0, 0, 0] ^= 1
    assert conversions.image_key(conversions.rgb_to_image_msg(other)) != conversions.image_key(a)


def test_result_to_msg_threshold_masks_and_timings():
    from std_msgs.msg import Header

    from ros_pgpt.inference.predictor import GroundedObject, GroundingResult

    mask = np.zeros((30, 40), bool)
    mask[5:10, 5:20] = True
    result = GroundingResult(prompt='the red star', answer='<obj><obj>', visual_tokens=16, frame_cached=True,
                             objects=[GroundedObject('red star', 0.9, (5, 5, 20, 10), mask),
                                      GroundedObject('red star', 0.2, (1, 1, 3, 3), mask)],
                             timings={'preprocess': 1.0, 'vision': 5.0, 'prefill': 2.0, 'total': 8.0})
    header = Header(frame_id='cam')
    msg = conversions.result_to_msg(result, header, score_threshold=0.5, extra_ms={'preprocess': 2.0, 'total': 20.0})
    assert len(msg.objects) == 1 and msg.objects[0].x_max == 20.0
    assert msg.preprocess_ms == 3.0 and msg.total_ms == 20.0 and msg.vision_ms == 0.0  # cached: no vision
    assert msg.rejected is False
    refused = GroundingResult(prompt='the blue star', answer='none', visual_tokens=16, frame_cached=True,
                              objects=[], rejected=1)
    assert conversions.result_to_msg(refused, header).rejected is True
    assert msg.objects[0].mask.encoding == 'mono8' and msg.objects[0].mask.header.frame_id == 'cam'
    # cropped to the box by default, placed by its offsets
    obj = msg.objects[0]
    assert (obj.mask.width, obj.mask.height, obj.mask_x_offset, obj.mask_y_offset) == (15, 5, 5, 5)
    assert np.array_equal(conversions.mask_from_image_msg(obj.mask), mask[5:10, 5:20])
    assert np.array_equal(conversions.mask_in_frame(obj, 40, 30), mask)
    full = conversions.result_to_msg(result, header, full_frame_masks=True).objects[0]
    assert (full.mask.width, full.mask.height, full.mask_x_offset, full.mask_y_offset) == (40, 30, 0, 0)
    assert np.array_equal(conversions.mask_from_image_msg(full.mask), mask)
    boxes_only = conversions.result_to_msg(result, header, masks=False)
    assert len(boxes_only.objects) == 2 and boxes_only.objects[0].mask.width == 0
    dets = conversions.detections_from_msg(msg)
    assert dets[0].phrase == 'red star' and dets[0].mask_offset == (5, 5)
    assert np.array_equal(conversions.paste_mask(dets[0].mask, dets[0].mask_offset, 40, 30), mask)
    # words: the object's prompt on each object, a readable answer on the array
    assert obj.prompt == 'the red star' and obj.track_id == 0 and msg.standing is False
    assert msg.answer == '1 object: red star'
    assert boxes_only.answer == '2 objects: red star' and conversions.result_to_msg(refused, header).answer == 'none'


def test_crop_mask_keeps_pixels_outside_the_box():
    mask = np.zeros((30, 40), bool)
    mask[10:20, 10:20] = True
    mask[25, 35] = True  # refinement can leave a pixel outside the box
    crop, x, y = conversions.crop_mask(mask, (10.2, 10.0, 19.6, 20.0))
    assert (x, y, crop.shape) == (10, 10, (16, 26))
    assert np.array_equal(conversions.paste_mask(crop, (x, y), 40, 30), mask)
    empty, x, y = conversions.crop_mask(np.zeros((30, 40), bool), (39.5, 29.5, 40.0, 30.0))
    assert empty.shape == (1, 1) and (x, y) == (39, 29), 'a mask is never 0x0 (that reads as "no mask")'


def test_standing_msg_holds_every_prompt_of_a_frame():
    from std_msgs.msg import Header

    from ros_pgpt.inference.predictor import GroundedObject, GroundingResult

    def result(prompt, n, rejected=0):
        objects = [GroundedObject('x', 0.9, (i, 0, i + 5, 5), None) for i in range(n)]
        return GroundingResult(prompt=prompt, answer='<obj>' * n or 'none', objects=objects, visual_tokens=64,
                               frame_cached=False, rejected=rejected,
                               timings={'vision': 10.0, 'decode': 2.0, 'total': 12.0})
    header = Header(frame_id='cam')
    parts = [conversions.result_to_msg(result('every star', 2), header),
             conversions.result_to_msg(result('the blue square', 0, rejected=1), header)]
    msg = conversions.standing_msg(parts, header)
    assert msg.standing and msg.header.frame_id == 'cam'
    assert msg.prompt.split('\n') == ['every star', 'the blue square']
    assert msg.answer.split('\n') == ['2 objects: star', 'none']
    assert [o.prompt for o in msg.objects] == ['every star', 'every star']
    assert msg.rejected and msg.vision_ms == 20.0 and msg.decode_ms == 4.0 and msg.visual_tokens == 64


def test_overlay_draws_boxes_masks_and_labels(rgb):
    mask = np.zeros(rgb.shape[:2], bool)
    mask[10:20, 10:20] = True
    base = np.full((30, 40, 3), 100, np.uint8)
    out = conversions.draw_overlay(base, [conversions.Detection('star', 0.5, (5, 5, 30, 25), mask)], title='q')
    assert out.shape == base.shape and out.dtype == np.uint8
    assert not np.array_equal(out, base) and np.array_equal(base, np.full((30, 40, 3), 100, np.uint8))
    assert (out[15, 15] != 100).any(), 'mask tinted'
    # a crop at its offset draws exactly what the full-frame mask draws
    cropped = conversions.Detection('star', 0.5, (5, 5, 30, 25), mask[10:20, 10:20], (10, 10))
    assert np.array_equal(conversions.draw_overlay(base, [cropped], title='q'), out)
    tracked = conversions.Detection('star', 0.5, (5, 5, 30, 25), mask, track_id=7)
    assert tracked.label == 'star #7 0.50' and cropped.label == 'star 0.50'


def test_iou_matching():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert match_boxes([(0, 0, 10, 10), (50, 50, 60, 60)], [(50, 50, 60, 60), (100, 0, 110, 10)]) == [1.0, 0.0]
    # one-to-one, best IoU first: the second prediction overlaps both truths but the first took the better one
    assert match_boxes([(0, 0, 10, 10), (0, 0, 10, 8)], [(0, 0, 10, 10), (20, 0, 30, 10)]) == [1.0, 0.0]
    assert match_boxes([(0, 0, 10, 10), (0, 0, 10, 5)], [(0, 0, 10, 6), (0, 0, 10, 10)]) == [pytest.approx(5 / 6), 1.0]
    assert match_boxes([], [(0, 0, 1, 1)]) == [0.0] and match_boxes([(0, 0, 1, 1)], []) == []


def test_image_files(tmp_path, rgb):
    path = tmp_path / 'x.png'
    conversions.write_image_file(path, rgb)
    assert np.array_equal(conversions.read_image_file(path), rgb)
    assert np.array_equal(cv2.imread(str(path))[:, :, ::-1], rgb)
    with pytest.raises(ValueError, match='cannot read'):
        conversions.read_image_file(tmp_path / 'missing.png')


def test_boxes_from_flat():
    boxes = conversions.boxes_from_flat([1, 2, 30, 40, 5, 6, 70, 80])
    assert boxes.shape == (2, 4) and boxes.dtype == np.float32 and boxes[1, 2] == 70
    assert conversions.boxes_from_flat([]).shape == (0, 4)
    for values, words in (([1, 2, 3], 'four per box'), ([0, 0, np.inf, 1], 'infinite'), ([0, 0, np.nan, 1], 'NaN')):
        with pytest.raises(ValueError, match=words):
            conversions.boxes_from_flat(values)
