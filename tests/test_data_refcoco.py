"""Tests for the RefCOCO-style loader on a tiny dataset written by the test itself."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ros_pgpt.data import Query, Sample
from ros_pgpt.data.refcoco import RefCocoDataset, polygons_to_mask, rle_string_to_counts, rle_to_mask

H, W = 48, 64


# ---------------------------------------------------------------- test-side RLE encoder

def encode_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with a run of zeros (COCO RLE)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return counts


def counts_to_string(counts: list[int]) -> str:
    """pycocotools rleToString, transcribed independently."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


# --------------------------------------------------------------------------- fixture

def _masks():
    rect = np.zeros((H, W), bool)
    rect[5:15, 10:30] = True  # polygon [10,5]-[30,15] covers exactly these pixel centres
    blob = np.zeros((H, W), bool)
    yy, xx = np.mgrid[0:H, 0:W]
    blob[(yy - 30) ** 2 + (xx - 40) ** 2 < 64] = True
    blob[40:44, 2:9] = True
    ring = np.zeros((H, W), bool)
    ring[20:40, 5:25] = True
    ring[25:35, 10:20] = False
    return rect, blob, ring


@pytest.fixture
def dataset_dir(tmp_path):
    rng = np.random.default_rng(0)
    img1 = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)  # RGB content we expect back
    img2 = np.zeros((H, W, 3), np.uint8)
    img2[..., 0] = 200  # pure red in RGB
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), cv2.cvtColor(img1, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "images" / "b.png"), cv2.cvtColor(img2, cv2.COLOR_RGB2BGR))
    rect, blob, ring = _masks()
    inst = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W},
                   {"id": 2, "file_name": "b.png", "height": H, "width": W},
                   {"id": 3, "file_name": "missing.png", "height": H, "width": W}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "iscrowd": 0,
             "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]]},
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": encode_counts(blob)}},
            {"id": 12, "image_id": 2, "category_id": 2, "bbox": [5, 20, 20, 20], "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": counts_to_string(encode_counts(ring))}},
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [40, 2, 10, 6], "iscrowd": 0,
             "segmentation": [[40, 2, 50, 2, 40, 8], [52, 10, 60, 10, 60, 20, 52, 20]]},
            {"id": 14, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": []},
        ],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "ball"}],
    }
    refs = [
        {"ref_id": 100, "ann_id": 10, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [{"sent": "the cup on the left", "raw": "The cup on the left!"},
                       {"sent": "grey box"}]},
        {"ref_id": 101, "ann_id": 11, "image_id": 1, "split": "val", "sentences": [{"sent": "round ball"}]},
        {"ref_id": 102, "ann_id": 12, "image_id": 2, "split": "val", "sentences": [{"sent": "the ring"}]},
        {"ref_id": 103, "ann_id": 13, "image_id": 2, "split": "train", "sentences": [{"sent": "two bits"}]},
        {"ref_id": 104, "ann_id": 14, "image_id": 3, "split": "testA", "sentences": [{"sent": "gone"}]},
    ]
    (tmp_path / "instances.json").write_text(json.dumps(inst))
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    return tmp_path, img1, img2


def _ds(d, split="val"):
    return RefCocoDataset(d / "instances.json", d / "refs.json", d / "images", split=split)


# ----------------------------------------------------------------------------- tests

def test_lengths_and_splits(dataset_dir):
    d, _, _ = dataset_dir
    assert len(_ds(d)) == 4  # ref 100 has two sentences
    assert len(_ds(d, "train")) == 1
    assert len(_ds(d, None)) == 6
    assert _ds(d).splits == ["testA", "train", "val"]


def test_polygon_item_and_image(dataset_dir):
    d, img1, _ = dataset_dir
    ds = _ds(d)
    s = ds[0]
    assert isinstance(s, Sample)
    assert np.array_equal(s.scene.image, img1)  # RGB, not BGR
    (q,) = s.queries
    assert q == Query(kind="single", prompt="the cup on the left", targets=(0,), phrase="the cup on the left")
    assert ds[1].queries[0].prompt == "grey box"
    (obj,) = s.scene.objects
    rect, _, _ = _masks()
    assert np.array_equal(obj.mask, rect)
    assert obj.box == (10.0, 5.0, 30.0, 15.0)
    assert obj.shape == "cup"


def test_uncompressed_and_compressed_rle(dataset_dir):
    d, _, img2 = dataset_dir
    ds = _ds(d)
    _, blob, ring = _masks()
    blob_obj = ds[2].scene.objects[0]
    assert np.array_equal(blob_obj.mask, blob)
    ys, xs = np.nonzero(blob)
    assert blob_obj.box == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)  # from mask, not bbox
    s = ds[3]
    assert np.array_equal(s.scene.image, img2)
    assert np.array_equal(s.scene.objects[0].mask, ring)
    assert s.scene.objects[0].box == (5.0, 20.0, 25.0, 40.0)
    assert s.scene.objects[0].shape == "ball"


def test_multi_polygon_union(dataset_dir):
    d, _, _ = dataset_dir
    obj = _ds(d, "train")[0].scene.objects[0]
    m = obj.mask
    assert m[10:20, 52:60].all() and m[5, 41]  # square part and triangle part
    assert not m[15, 45] and not m[7, 49]  # outside both (right of the triangle's hypotenuse)
    assert obj.box == (40.0, 2.0, 60.0, 20.0)


def test_rle_string_known_vectors():
    # hand-computed with the pycocotools algorithm
    assert rle_string_to_counts("352") == [3, 5, 2]
    assert rle_string_to_counts("3522") == [3, 5, 2, 7]  # 4th value stored as diff to 2nd
    assert rle_string_to_counts("352L") == [3, 5, 2, 1]  # negative diff
    assert rle_string_to_counts("T3") == [100]  # multi-character value


def test_rle_round_trip_random():
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < rng.random()
        counts = encode_counts(m)
        assert np.array_equal(rle_to_mask({"size": [int(h), int(w)], "counts": counts}), m)
        assert np.array_equal(rle_to_mask({"size": [int(h), int(w)], "counts": counts_to_string(counts)}), m)
    with pytest.raises(ValueError):
        rle_to_mask({"size": [4, 4], "counts": [3, 4]})


def test_polygon_rasterisation_matches_pixel_centres():
    # triangle: a pixel is in iff its centre is strictly left of / on the hypotenuse
    m = polygons_to_mask([[0, 0, 20, 0, 0, 20]], 24, 24)
    yy, xx = np.mgrid[0:24, 0:24] + 0.5
    expected = (xx + yy < 20) & (xx > 0) & (yy > 0)
    assert np.array_equal(m, expected)
    # several polygons of one annotation are united (overlap stays filled)
    m = polygons_to_mask([[2, 2, 8, 2, 8, 8, 2, 8], [5, 5, 11, 5, 11, 11, 5, 11]], 12, 12)
    assert m[5:8, 5:8].all() and m.sum() == 36 + 36 - 9
    # clipped to the image
    m = polygons_to_mask([[-5, -5, 5, -5, 5, 5, -5, 5]], 10, 10)
    assert m.sum() == 25 and m[:5, :5].all()


def test_missing_image_error_names_file(dataset_dir):
    d, _, _ = dataset_dir
    ds = _ds(d, "testA")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ds[0]


def test_missing_json_and_pickle_refused(dataset_dir, tmp_path):
    d, _, _ = dataset_dir
    with pytest.raises(FileNotFoundError, match="nope.json"):
        RefCocoDataset(d / "instances.json", d / "nope.json", d / "images")
    with pytest.raises(FileNotFoundError, match="inst_missing.json"):
        RefCocoDataset(d / "inst_missing.json", d / "refs.json", d / "images")
    pk = tmp_path / "refs(unc).p"
    pk.write_bytes(b"\x80\x04N.")
    with pytest.raises(ValueError, match="pickle"):
        RefCocoDataset(d / "instances.json", pk, d / "images")


def test_bad_reference_rejected(dataset_dir):
    d, _, _ = dataset_dir
    refs = json.loads((d / "refs.json").read_text())
    refs.append({"ref_id": 999, "ann_id": 77, "image_id": 1, "split": "val", "sentences": [{"sent": "x"}]})
    (d / "refs.json").write_text(json.dumps({"refs": refs}))
    with pytest.raises(ValueError, match="ann_id 77"):
        _ds(d)


def test_index_errors(dataset_dir):
    d, _, _ = dataset_dir
    ds = _ds(d)
    with pytest.raises(IndexError):
        ds[len(ds)]
