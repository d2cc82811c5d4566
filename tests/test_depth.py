"""ros_pgpt.ros.depth: depth decoding, intrinsics scaling and per-object 3D statistics (no ROS, no model)."""
from types import SimpleNamespace

import numpy as np
import pytest

from ros_pgpt.ros import depth as D

K640 = D.Intrinsics(fx=500.0, fy=500.0, cx=319.5, cy=239.5, width=640, height=480)


def image_msg(array, encoding, bigendian=False, pad=0):
    """A duck-typed sensor_msgs/Image holding ``array`` (rows padded by ``pad`` bytes)."""
    array = np.asarray(array, array.dtype.newbyteorder('>' if bigendian else '<'))
    rows = array.view(np.uint8).reshape(array.shape[0], -1)
    rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, width=array.shape[1], height=array.shape[0], step=rows.shape[1],
                           is_bigendian=int(bigendian), data=rows.tobytes())


def camera_info(k: D.Intrinsics, binning=0, roi=(0, 0)):
    return SimpleNamespace(width=k.width, height=k.height, k=[k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1],
                           binning_x=binning, binning_y=binning, roi=SimpleNamespace(width=roi[0], height=roi[1]))


def plane(depth_m, k=K640):
    return D.DepthFrame(np.full((k.height, k.width), depth_m, np.float32), k)


def square_mask(shape, x0, y0, x1, y1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ------------------------------------------------------------------ decoding
def test_depth_files_round_trip_through_messages(tmp_path):
    """A 16-bit PNG (mm) and a .npy (m) read by read_depth_file decode to the same metres (ros-pgpt query --depth)."""
    import cv2

    millimetres = np.array([[0, 1000, 1500], [65535, 250, 0]], np.uint16)
    cv2.imwrite(str(tmp_path / 'depth.png'), millimetres)
    np.save(tmp_path / 'depth.npy', millimetres.astype(np.float64) / 1000)
    from_png = D.read_depth_file(tmp_path / 'depth.png')
    assert from_png.dtype == np.uint16 and D.depth_to_msg(from_png).encoding == '16UC1'
    from_npy = D.read_depth_file(tmp_path / 'depth.npy')
    assert from_npy.dtype == np.float32 and D.depth_to_msg(from_npy).encoding == '32FC1'
    np.testing.assert_allclose(D.depth_msg_to_metres(D.depth_to_msg(from_png)),
                               D.depth_msg_to_metres(D.depth_to_msg(from_npy)), rtol=1e-6)
    cv2.imwrite(str(tmp_path / 'colour.png'), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(D.DepthError, match='one channel of uint16 millimetres'):
        D.read_depth_file(tmp_path / 'colour.png')
    for missing in ('missing.png', 'missing.npy'):
        with pytest.raises(D.DepthError, match='cannot read'):
            D.read_depth_file(tmp_path / missing)


def test_camera_info_msg_round_trips_the_intrinsics():
    assert D.intrinsics_from_camera_info(D.camera_info_msg(K640)) == K640


def test_16uc1_is_millimetres_and_zero_is_no_reading():
    raw = np.array([[0, 1000, 1500], [65535, 250, 0]], np.uint16)
    metres = D.depth_msg_to_metres(image_msg(raw, '16UC1'))
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres[0, 1:], [1.0, 1.5])
    np.testing.assert_allclose(metres[1, :2], [65.535, 0.25], rtol=1e-6)
    assert np.isnan(metres[0, 0]) and np.isnan(metres[1, 2])


def test_32fc1_is_metres_and_nan_inf_negative_are_no_reading():
    raw = np.array([[1.25, np.nan, np.inf], [-np.inf, -1.0, 0.0], [2.0, 3.0, 4.0]], np.float32)
    metres = D.depth_msg_to_metres(image_msg(raw, '32FC1'))
    assert metres[0, 0] == np.float32(1.25)
    assert np.isnan(metres[0, 1:]).all() and np.isnan(metres[1]).all()
    np.testing.assert_array_equal(metres[2], [2.0, 3.0, 4.0])


@pytest.mark.parametrize('encoding,dtype', [('16UC1', np.uint16), ('32FC1', np.float32)])
def test_big_endian_and_padded_rows(encoding, dtype):
    raw = (np.arange(12).reshape(3, 4) + 1).astype(dtype) * (1000 if encoding == '16UC1' else 1)
    metres = D.depth_msg_to_metres(image_msg(raw, encoding, bigendian=True, pad=6))
    np.testing.assert_allclose(metres, np.arange(12).reshape(3, 4) + 1.0)


def test_bad_depth_images_say_why():
    with pytest.raises(D.DepthError, match="unsupported depth encoding 'rgb8'.*16UC1 \\(millimetres\\)"):
        D.depth_msg_to_metres(image_msg(np.zeros((2, 2), np.uint16), 'rgb8'))
    msg = image_msg(np.zeros((4, 4), np.uint16), '16UC1')
    msg.data = msg.data[:-2]
    with pytest.raises(D.DepthError, match='data has 30 bytes but step\\*height = 8\\*4 = 32'):
        D.depth_msg_to_metres(msg)
    msg = image_msg(np.zeros((4, 4), np.float32), '32FC1')
    msg.step = 8
    with pytest.raises(D.DepthError, match='step 8 is smaller than width\\*4 = 16'):
        D.depth_msg_to_metres(msg)


# ------------------------------------------------------------------ intrinsics
def test_camera_info_checks():
    assert D.intrinsics_from_camera_info(camera_info(K640)) == K640
    with pytest.raises(D.DepthError, match='no valid focal lengths'):
        D.intrinsics_from_camera_info(camera_info(D.Intrinsics(0, 0, 0, 0, 640, 480)))
    with pytest.raises(D.DepthError, match='binning'):
        D.intrinsics_from_camera_info(camera_info(K640, binning=2))
    with pytest.raises(D.DepthError, match='no image size'):
        D.intrinsics_from_camera_info(camera_info(D.Intrinsics(500, 500, 1, 1, 0, 0)))


def test_scaling_keeps_the_rays_of_pixel_centres():
    half = K640.scaled_to(320, 240)
    assert (half.fx, half.fy, half.width, half.height) == (250.0, 250.0, 320, 240)
    # the centre of full-resolution pixels (2u+0.5) is half-resolution pixel u: same ray
    for u in (0.0, 100.0, 319.0):
        full_u = 2 * u + 0.5
        assert (u - half.cx) / half.fx == pytest.approx((full_u - K640.cx) / K640.fx)
    assert K640.scaled_to(640, 480) is K640


def test_different_aspect_is_a_clear_error():
    with pytest.raises(D.DepthError, match=r'camera_info is 640x480 \(aspect 1.333\) but depth image is 640x360 '
                                           r'\(aspect 1.778\).*registered'):
        K640.scaled_to(640, 360)
    depth = image_msg(np.ones((360, 640), np.float32), '32FC1')
    with pytest.raises(D.DepthError, match='colour image is 640x480.*depth image is 640x360'):
        D.DepthFrame.from_msgs(depth, camera_info(K640), (640, 480))


# ------------------------------------------------------------------ per object
def test_flat_square_on_a_plane():
    """A 100x100 px square at 2 m, centred on pixel (419.5, 239.5): x = 100 px * 2 m / 500 px = 0.4 m."""
    mask = square_mask((480, 640), 370, 190, 470, 290)
    stats = D.object_3d(plane(2.0), mask, extent_percentile=0.0)
    assert stats.status == D.DEPTH_OK and stats.valid_fraction == 1.0 and stats.depth == 2.0
    np.testing.assert_allclose(stats.centroid, (0.4, 0.0, 2.0), atol=2.5e-3)
    np.testing.assert_allclose(stats.extent, (99 * 2 / 500, 99 * 2 / 500, 0.0), atol=1e-9)
    np.testing.assert_allclose(stats.center, stats.centroid, atol=2.5e-3)


def test_mask_spilling_onto_the_background_is_ignored():
    depth = plane(3.0)
    depth.metres[190:290, 370:470] = 1.0
    mask = square_mask((480, 640), 360, 180, 480, 300)  # 20 px of background around the object
    stats = D.object_3d(depth, mask)
    assert stats.depth == 1.0 and stats.centroid[2] == 1.0
    assert stats.extent[2] == 0.0, 'background pixels must not stretch the depth extent'


def test_holes_missing_and_sparse():
    depth = plane(1.5)
    mask = square_mask((480, 640), 100, 100, 200, 200)
    depth.metres[100:200, 100:200] = np.nan
    stats = D.object_3d(depth, mask)
    assert stats.status == D.DEPTH_MISSING and stats.valid_fraction == 0.0
    assert np.isnan(stats.depth) and np.isnan(stats.centroid).all() and np.isnan(stats.extent).all()
    depth.metres[100:110, 100:200] = 1.5  # 10 % of the mask has a reading
    stats = D.object_3d(depth, mask, min_valid_fraction=0.2)
    assert stats.status == D.DEPTH_SPARSE and stats.valid_fraction == pytest.approx(0.1)
    assert stats.depth == 1.5
    assert D.object_3d(depth, mask, min_valid_fraction=0.05).status == D.DEPTH_OK
    assert D.object_3d(depth, np.zeros((480, 640), bool)).status == D.DEPTH_MISSING


def test_mask_at_colour_resolution_on_half_resolution_depth():
    """Colour 640x480 mask, depth 320x240 with K scaled: the same 3D answer as at full resolution."""
    mask = square_mask((480, 640), 370, 190, 470, 290)
    full = D.object_3d(plane(2.0), mask)
    half = D.object_3d(plane(2.0, K640.scaled_to(320, 240)), mask)
    assert half.status == D.DEPTH_OK
    np.testing.assert_allclose(half.centroid, full.centroid, atol=5e-3)
    np.testing.assert_allclose(half.extent, full.extent, atol=1e-2)


def test_tilted_plane_extent_in_depth():
    """A square on a plane tilted about the x axis: z grows with v, the z extent is the percentile range."""
    k = K640
    v = np.arange(k.height, dtype=np.float32)[:, None]
    metres = np.broadcast_to(1.0 + 0.002 * (v - 240.0), (k.height, k.width)).astype(np.float32)
    mask = square_mask((480, 640), 300, 140, 340, 340)  # rows 140..339: z from 0.8 to 1.198 m
    stats = D.object_3d(D.DepthFrame(metres.copy(), k), mask, extent_percentile=0.0)
    assert stats.extent[2] == pytest.approx(0.398, abs=1e-3)
    assert stats.centroid[2] == pytest.approx(1.0, abs=2e-3)
