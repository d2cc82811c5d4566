"""RefCOCO-style referring-expression data from local files.

Inputs
------
* ``instances_json`` — a COCO instances file: ``images`` (``id``, ``file_name``,
  ``height``, ``width``), ``annotations`` (``id``, ``image_id``, ``bbox``
  ``[x, y, w, h]``, ``segmentation``, optional ``category_id``) and optional
  ``categories`` (``id``, ``name``). Segmentations may be polygons
  (``[[x1, y1, x2, y2, ...], ...]``, several polygons are united), uncompressed
  RLE (``{"size": [h, w], "counts": [int, ...]}``) or compressed RLE
  (``counts`` as the COCO/pycocotools LEB128-like string).
* ``refs_json`` — the refs as **JSON**: a list (or ``{"refs": [...]}``) of
  ``{ref_id, ann_id, image_id, split, sentences: [{sent}, ...]}``. The original
  RefCOCO ``refs(unc).p`` is a pickle; pickles can execute code, so they are
  refused here. Convert a copy you trust once with::

      python -c "import pickle, json; json.dump(pickle.load(open('refs(unc).p', 'rb')), open('refs.json', 'w'))"

* ``image_root`` — directory holding the ``file_name`` images (read with cv2).

Each (ref, sentence) pair is one item: a :class:`~ros_pgpt.data.scenes.Sample`
whose scene holds the RGB image and a single object (the referred annotation)
and one ``Query(kind="single", prompt=sentence, targets=(0,), phrase=sentence)``.

Mask conventions: a pixel belongs to a polygon when its centre ``(x + 0.5,
y + 0.5)`` lies inside (even-odd rule per polygon, union over polygons; centres
exactly on an edge follow the top-left rule) — the
usual COCO convention, within a pixel of pycocotools on slanted edges. An
annotation without segmentation gets the pixels of its bbox. ``SceneObject.box``
is the tight box of the mask (max exclusive), like generated scenes, falling
back to the COCO bbox if the mask is empty. ``SceneObject.shape`` holds the
COCO category name ("" if unknown); ``colour`` and ``size`` are "".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ros_pgpt.data.scenes import Query, Sample, Scene, SceneObject

__all__ = ["RefCocoDataset", "polygons_to_mask", "rle_to_mask", "rle_string_to_counts",
           "segmentation_to_mask"]


# ---------------------------------------------------------------------------- masks

def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons (pixel-centre sampling, even-odd, union) -> bool HxW."""
    mask = np.zeros((height, width), bool)
    for poly in polygons:
        p = np.asarray(poly, np.float64).reshape(-1, 2)
        if len(p) < 3:
            continue
        x1, y1 = p[:, 0], p[:, 1]
        x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
        r0 = max(0, int(np.floor(y1.min() - 0.5)))
        r1 = min(height, int(np.ceil(y1.max() + 0.5)) + 1)
        if r0 >= r1:
            continue
        yc = (np.arange(r0, r1, dtype=np.float64) + 0.5)[:, None]
        lo, hi = np.minimum(y1, y2), np.maximum(y1, y2)
        cross = (yc >= lo) & (yc < hi)  # half-open: horizontal edges never cross
        ri, ei = np.nonzero(cross)
        if ri.size == 0:
            continue
        dy = y2[ei] - y1[ei]
        xc = x1[ei] + (yc[ri, 0] - y1[ei]) * (x2[ei] - x1[ei]) / dy
        # first pixel whose centre is at/right of the crossing (top-left fill rule:
        # centres exactly on a left/top edge are in, on a right/bottom edge out)
        col = np.clip(np.ceil(xc - 0.5).astype(np.int64), 0, width)
        diff = np.zeros((r1 - r0, width + 1), np.int32)
        np.add.at(diff, (ri, col), 1)
        mask[r0:r1] |= (np.cumsum(diff, axis=1)[:, :width] & 1).astype(bool)
    return mask


def rle_string_to_counts(s: str) -> list[int]:
    """Decode a compressed COCO RLE ``counts`` string (pycocotools ``rleFrString``)."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("truncated compressed RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` list or compressed string) -> bool HxW."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed RLE (need 'size': [h, w] and 'counts'): {e}") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = rle_string_to_counts(counts)
    counts = np.asarray(counts, np.int64)
    if (counts < 0).any() or counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h}*{w}={h * w}")
    values = (np.arange(len(counts)) & 1).astype(bool)  # runs alternate 0,1,0,... starting with 0
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()  # column-major (Fortran) order


def segmentation_to_mask(seg: Any, height: int, width: int) -> np.ndarray:
    """Polygons, uncompressed RLE or compressed RLE -> bool HxW."""
    if isinstance(seg, dict):
        m = rle_to_mask(seg)
        if m.shape != (height, width):
            raise ValueError(f"RLE size {m.shape} != image size {(height, width)}")
        return m
    if isinstance(seg, list):
        if seg and isinstance(seg[0], (int, float)):  # a single flat polygon
            seg = [seg]
        return polygons_to_mask(seg, height, width)
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def _box_mask(bbox, height, width) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return polygons_to_mask([[x, y, x + w, y, x + w, y + h, x, y + h]], height, width)


# -------------------------------------------------------------------------- dataset

def _load_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"RefCOCO {what} file not found: {path}")
    if path.suffix.lower() in (".p", ".pkl", ".pickle"):
        raise ValueError(f"{path} looks like a pickle; refusing to unpickle. Convert trusted refs "
                         "to JSON first (see ros_pgpt/data/refcoco.py docstring).")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"RefCOCO {what} file {path} is not valid JSON: {e}") from None


class RefCocoDataset:
    """(ref, sentence) pairs of a RefCOCO-style dataset as :class:`Sample` objects.

    Args:
        instances_json: COCO instances JSON path.
        refs_json: refs JSON path (not a pickle).
        image_root: directory with the images named by ``file_name``.
        split: keep refs with this ``split`` (e.g. "train", "val", "testA");
            ``None`` keeps all.
    """

    def __init__(self, instances_json, refs_json, image_root, split: str | None = "val"):
        self.instances_json = Path(instances_json)
        self.refs_json = Path(refs_json)
        self.image_root = Path(image_root)
        self.split = split
        inst = _load_json(self.instances_json, "instances")
        refs = _load_json(self.refs_json, "refs")
        if isinstance(refs, dict):
            refs = refs.get("refs")
        if not isinstance(inst, dict) or "images" not in inst or "annotations" not in inst:
            raise ValueError(f"{self.instances_json}: expected a COCO dict with 'images' and 'annotations'")
        if not isinstance(refs, list):
            raise ValueError(f"{self.refs_json}: expected a list of refs (or {{'refs': [...]}})")
        self.images = {int(im["id"]): im for im in inst["images"]}
        self.annotations = {int(a["id"]): a for a in inst["annotations"]}
        self.categories = {int(c["id"]): str(c.get("name", "")) for c in inst.get("categories", [])}
        self.splits = sorted({str(r.get("split")) for r in refs})
        self.refs = [r for r in refs if split is None or r.get("split") == split]
        self.items: list[tuple[int, str]] = []  # (index into self.refs, sentence)
        for i, r in enumerate(self.refs):
            for key in ("ref_id", "ann_id", "image_id", "sentences"):
                if key not in r:
                    raise ValueError(f"{self.refs_json}: ref {r.get('ref_id', i)} lacks '{key}'")
            if int(r["ann_id"]) not in self.annotations:
                raise ValueError(f"ref {r['ref_id']}: ann_id {r['ann_id']} not in {self.instances_json}")
            if int(r["image_id"]) not in self.images:
                raise ValueError(f"ref {r['ref_id']}: image_id {r['image_id']} not in {self.instances_json}")
            for s in r["sentences"]:
                sent = s.get("sent", s.get("raw")) if isinstance(s, dict) else s
                if sent:
                    self.items.append((i, str(sent).strip()))

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self.images[int(image_id)]["file_name"]

    def load_image(self, image_id: int) -> np.ndarray:
        path = self.image_path(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"RefCOCO image not found: {path} (image_id={image_id})")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"could not decode image {path} (image_id={image_id})")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def target(self, ref: dict, height: int, width: int) -> SceneObject:
        ann = self.annotations[int(ref["ann_id"])]
        seg = ann.get("segmentation")
        if seg:
            mask = segmentation_to_mask(seg, height, width)
        else:
            mask = _box_mask(ann["bbox"], height, width)
        if mask.any():
            ys = np.flatnonzero(mask.any(axis=1))
            xs = np.flatnonzero(mask.any(axis=0))
            box = (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))
        else:
            x, y, w, h = (float(v) for v in ann["bbox"])
            box = (x, y, x + w, y + h)
        name = self.categories.get(int(ann.get("category_id", ref.get("category_id", -1))), "")
        return SceneObject(colour="", shape=name, size="", box=box, mask=mask,
                           size_px=max(box[2] - box[0], box[3] - box[1]), visible_fraction=1.0)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        ref_i, sent = self.items[index]
        ref = self.refs[ref_i]
        image = self.load_image(ref["image_id"])
        h, w = image.shape[:2]
        info = self.images[int(ref["image_id"])]
        if "height" in info and "width" in info and (int(info["height"]), int(info["width"])) != (h, w):
            raise ValueError(f"{self.image_path(ref['image_id'])}: image is {w}x{h} but annotations say "
                             f"{info['width']}x{info['height']}")
        obj = self.target(ref, h, w)
        query = Query(kind="single", prompt=sent, targets=(0,), phrase=sent)
        return Sample(scene=Scene(image=image, objects=[obj]), queries=[query])
