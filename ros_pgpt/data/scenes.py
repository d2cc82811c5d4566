"""Synthetic tabletop scenes with referring expressions.

A :class:`SceneGenerator` draws 1-6 flat coloured shapes (circle, square,
triangle, 5-pointed star) on a low-saturation background (flat, gradient,
noise, wood-like stripes, checker, blotches), applies lighting changes, and
produces referring-expression queries whose answers are known exactly.
Options (all off by default) bring the scenes closer to a camera: photographs
as backgrounds and camera effects (``camera.py``), objects crowded onto each
other or cut by the frame border, distractors outside the vocabulary, and
object sizes across the whole range.
The pixels (shape masks, backgrounds, lighting) are drawn by ``render.py``.
Everything is deterministic given the seed passed to :meth:`SceneGenerator.sample`
(and the constructor arguments).

The exact phrasing produced here is documented in ``PHRASING.md`` next to this
file; keep the two in sync (``tests/test_data_scenes.py`` checks the
vocabulary and templates listed there against the constants below).

Geometry conventions
--------------------
* Boxes are ``(x_min, y_min, x_max, y_max)`` in source pixels with exclusive
  max: the box of pixel set P is ``(min x, min y, max x + 1, max y + 1)``.
* ``SceneObject.mask`` holds only the *visible* pixels (later-drawn objects
  occlude earlier ones) and ``SceneObject.box`` is the tight box of that mask.
* Object "centre" (used for all position words) is the centre of that box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import cv2
import numpy as np

from ros_pgpt.data import camera, render

__all__ = [
    "COLOURS", "SHAPES", "SIZES", "QUERY_KINDS", "DEFAULT_QUERY_WEIGHTS",
    "SMALL_SIZE_RANGE", "LARGE_SIZE_RANGE", "REFERENCE_SIDE", "POSITION_MARGIN",
    "MIN_VISIBLE_FRACTION", "MIN_VISIBLE_AREA", "UNNAMED_SIZE",
    "DISTRACTOR_COLOURS", "DISTRACTOR_SHAPES", "DISTRACTOR_SIZE_RANGE",
    "SINGLE_TEMPLATES", "PLURAL_TEMPLATES", "DESCRIBE_TEMPLATES",
    "POSITION_WORDS", "RELATION_WORDS", "PLURAL_NOUNS", "SINGULAR_NOUNS",
    "SceneObject", "Scene", "Query", "Sample", "SceneGenerator", "SceneMix",
    "noun_phrase", "describe_object",
]

# ----------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------

#: colour name -> nominal RGB (chosen well apart in hue; objects get +-15 jitter)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (240, 220, 20),
    "green": (30, 170, 50),
    "blue": (30, 80, 220),
    "purple": (140, 40, 170),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SIZES: tuple[str, ...] = ("small", "large")
QUERY_KINDS: tuple[str, ...] = ("single", "plural", "absent", "describe", "relation_box")
DEFAULT_QUERY_WEIGHTS: dict[str, float] = {
    "single": 0.45, "plural": 0.25, "absent": 0.15, "describe": 0.10, "relation_box": 0.05,
}

#: object extent (max side of the un-occluded shape's box) in px at REFERENCE_SIDE
SMALL_SIZE_RANGE = (20.0, 60.0)
LARGE_SIZE_RANGE = (100.0, 200.0)
#: sizes/margins scale with min(W, H) / REFERENCE_SIDE
REFERENCE_SIDE = 480
#: position words need centre differences of at least this many px (at 480 scale)
POSITION_MARGIN = 20.0
#: every object keeps this fraction of its un-occluded area visible (pixels outside the frame are hidden)
MIN_VISIBLE_FRACTION = 0.6
MIN_VISIBLE_AREA = 60
#: size of an object between the two bands (``whole_size_range``): no size word names it
UNNAMED_SIZE = "medium"

#: distractors (``distractors``): a colour or a shape outside the vocabulary, never an answer
DISTRACTOR_COLOURS: dict[str, tuple[int, int, int]] = {
    "pink": (245, 150, 200), "brown": (115, 65, 30), "grey": (128, 128, 128),
    "white": (240, 240, 240), "black": (25, 25, 25),
}
DISTRACTOR_SHAPES: tuple[str, ...] = ("ellipse", "cross", "hexagon")
#: distractor extent at REFERENCE_SIDE: never small enough to pass for a circle or a square
DISTRACTOR_SIZE_RANGE = (40.0, 200.0)

SINGLE_TEMPLATES: tuple[str, ...] = (
    "{}",
    "find {}",
    "where is {}?",
    "show me {}",
    "locate {}",
    "point to {}",
    "segment {}",
    "can you find {}?",
)
#: "where are {}?" is only used with "all the ..." phrases, never with "every ..."
PLURAL_TEMPLATES: tuple[str, ...] = (
    "{}",
    "find {}",
    "show me {}",
    "locate {}",
    "segment {}",
    "point to {}",
    "where are {}?",
)
DESCRIBE_TEMPLATES: tuple[str, ...] = (
    "what is in <box>?",
    "what is inside <box>?",
    "what object is in <box>?",
    "describe <box>",
)
#: superlative position words -> (axis, sign): axis 0 = centre x, 1 = centre y;
#: sign -1 means "smallest coordinate".
POSITION_WORDS: dict[str, tuple[int, int]] = {
    "leftmost": (0, -1), "rightmost": (0, 1), "topmost": (1, -1), "bottom-most": (1, 1),
}
#: relation words -> sign of (target centre x - reference centre x)
RELATION_WORDS: dict[str, int] = {"left of": -1, "right of": 1}
PLURAL_NOUNS: dict[str, str] = {
    "circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
    "object": "objects", "shape": "shapes",
}
SINGULAR_NOUNS: dict[str, str] = {plural: noun for noun, plural in PLURAL_NOUNS.items()}

# attribute masks (use size, use colour, use shape), ordered by attribute count
_ATTR_MASKS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False),
    (False, False, True), (False, True, False), (True, False, False),
    (False, True, True), (True, False, True), (True, True, False),
    (True, True, True),
)
# relation_box / positional base descriptors: colour? + shape|object
BASE_MASKS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False), (False, False, True), (False, True, False), (False, True, True),
)

_COLOUR_NAMES = tuple(COLOURS)

# ----------------------------------------------------------------------------
# Data classes
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: str  # "small" | "large" | UNNAMED_SIZE (between the bands)
    box: tuple[float, float, float, float]  # tight box of the visible mask, max exclusive
    mask: np.ndarray = field(compare=False, repr=False)  # bool HxW, visible pixels only
    #: nominal extent (max side of the un-occluded shape's box) in source px (extra, optional)
    size_px: float = 0.0
    #: visible area / un-occluded area (extra, optional)
    visible_fraction: float = 1.0

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (0.5 * (x0 + x1), 0.5 * (y0 + y1))


@dataclass
class Scene:
    image: np.ndarray  # HxWx3 uint8 RGB
    objects: list[SceneObject]  # drawing order; colours and shapes of the vocabulary only
    #: objects outside the vocabulary (their masks occlude and are occluded like the others)
    distractors: list[SceneObject] = field(default_factory=list)
    background: str = ""  # background kind, "photo:<name>" for a photograph


@dataclass(frozen=True)
class Query:
    kind: str  # one of QUERY_KINDS
    prompt: str  # contains "<box>" once per input box
    targets: tuple[int, ...]  # indices into scene.objects, sorted by (centre x, centre y)
    phrase: str
    input_boxes: tuple[tuple[float, float, float, float], ...] = ()
    answer_text: str = ""


@dataclass
class Sample:
    scene: Scene
    queries: list[Query]


# ----------------------------------------------------------------------------
# Phrase helpers
# ----------------------------------------------------------------------------

def noun_phrase(desc: Sequence[str | None], plural: bool = False, noun: str = "object") -> str:
    """``(size, colour, shape)`` with ``None`` for unused attributes -> words.

    ``("small", "red", None)`` -> ``"small red object"``; with ``plural=True``
    -> ``"small red objects"``. ``noun`` replaces a missing shape ("object" or "shape").
    """
    size, colour, shape = desc
    head = shape if shape is not None else noun
    if plural:
        head = PLURAL_NOUNS[head]
    words = [w for w in (size, colour) if w is not None]
    words.append(head)
    return " ".join(words)


def describe_object(obj: SceneObject) -> str:
    """Answer text for "describe" queries: ``"<size> <colour> <shape>"``."""
    return f"{obj.size} {obj.colour} {obj.shape}"


def _match(desc, attrs) -> bool:
    return ((desc[0] is None or desc[0] == attrs[0]) and (desc[1] is None or desc[1] == attrs[1])
            and (desc[2] is None or desc[2] == attrs[2]))


def _desc(attrs, mask):
    return (attrs[0] if mask[0] else None, attrs[1] if mask[1] else None, attrs[2] if mask[2] else None)


def _sort_targets(idx, centres) -> tuple[int, ...]:
    return tuple(sorted(idx, key=lambda i: (centres[i][0], centres[i][1], i)))


# ----------------------------------------------------------------------------
# Placement
# ----------------------------------------------------------------------------

class _Placed:
    """Mutable per-object state while a scene is being built. ``full`` is the shape's mask inside the
    frame; ``full_area`` counts the pixels a frame border cuts off too."""

    __slots__ = ("attrs", "rgb", "size_px", "x0", "y0", "full", "vis", "full_area", "vis_area", "distractor")

    def __init__(self, attrs, rgb, size_px, x0, y0, full, full_area, distractor=False):
        self.attrs = attrs
        self.rgb = rgb
        self.size_px = size_px
        self.x0 = x0
        self.y0 = y0
        self.full = full
        self.vis = full.copy()
        self.full_area = full_area
        self.vis_area = int(np.count_nonzero(full))
        self.distractor = distractor


def _size_word(extent: float) -> str:
    """Size word of an extent at REFERENCE_SIDE: small, large, or UNNAMED_SIZE between the bands."""
    if extent <= SMALL_SIZE_RANGE[1]:
        return "small"
    return "large" if extent >= LARGE_SIZE_RANGE[0] else UNNAMED_SIZE


# ----------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------


class SceneGenerator:
    """Deterministic, on-the-fly generator of scenes + referring queries.

    Args:
        resolutions: ``(W, H)`` pairs, one sampled uniformly per scene.
        min_objects, max_objects: object count range (inclusive) per scene.
        query_kinds: weights per query kind (missing kinds get weight 0);
            default :data:`DEFAULT_QUERY_WEIGHTS`.
        verbose_prob: probability that a "single" query uses a random longer
            (still unambiguous) description instead of a shortest one.
        plural_several: probability that a "plural" query describes several
            objects whenever the scene allows it (training can oversample them;
            0 leaves the draw, and so every held-out split, as it was).
        min_visible_fraction: every object keeps at least this fraction visible.
        lighting: apply brightness/contrast, illumination gradient, noise, blur.

    Camera conditions (probabilities; 0, the default, leaves every scene as it was):
        photo_backgrounds: per scene, a crop of a photograph from ``photos``
            (default ``camera.TRAIN_PHOTOS``) instead of a synthetic background.
        photo_recolour: per photograph background, its hues rotated and its
            saturation rescaled (``camera.recolour``).
        camera_effects: per scene, exposure, colour cast, noise, blur and JPEG
            compression after the lighting (``camera.camera_effects``).
        occlusion: per object, its centre is drawn on another object's box.
        truncation: per object, it is placed across a frame border.
        distractors: per object, it gets a colour (``DISTRACTOR_COLOURS``) or a
            shape (``DISTRACTOR_SHAPES``) outside the vocabulary; it goes to
            ``Scene.distractors`` and no query's description fits it.
        whole_size_range: per object, its extent is drawn over 20-200 px (at 480)
            instead of a size band; one between the bands has size
            ``UNNAMED_SIZE``, and no description with a size word fits it.
    """

    def __init__(self, *, resolutions: Sequence[tuple[int, int]] = ((640, 480),),
                 min_objects: int = 1, max_objects: int = 6,
                 query_kinds: Mapping[str, float] | None = None,
                 verbose_prob: float = 0.3, plural_several: float = 0.0,
                 min_visible_fraction: float = MIN_VISIBLE_FRACTION,
                 lighting: bool = True, photo_backgrounds: float = 0.0, photos: Sequence[str] | None = None,
                 photo_recolour: float = 0.0,
                 camera_effects: float = 0.0, occlusion: float = 0.0, truncation: float = 0.0,
                 distractors: float = 0.0, whole_size_range: float = 0.0):
        self.resolutions = tuple((int(w), int(h)) for w, h in resolutions)
        if not self.resolutions:
            raise ValueError("resolutions must not be empty")
        for w, h in self.resolutions:
            if min(w, h) < 120:
                raise ValueError(f"resolution {w}x{h} too small (min side 120)")
        if not 0 <= min_objects <= max_objects:
            raise ValueError("need 0 <= min_objects <= max_objects")
        self.min_objects, self.max_objects = int(min_objects), int(max_objects)
        weights = dict(DEFAULT_QUERY_WEIGHTS if query_kinds is None else query_kinds)
        unknown = set(weights) - set(QUERY_KINDS)
        if unknown:
            raise ValueError(f"unknown query kinds {sorted(unknown)}; known: {QUERY_KINDS}")
        w = np.array([float(weights.get(k, 0.0)) for k in QUERY_KINDS])
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("query_kinds weights must be >= 0 with a positive sum")
        self.query_weights = w / w.sum()
        self.verbose_prob = float(verbose_prob)
        self.plural_several = float(plural_several)
        self.min_visible_fraction = float(min_visible_fraction)
        self.lighting = bool(lighting)

        self.photos = tuple(camera.TRAIN_PHOTOS if photos is None else photos)
        unknown = set(self.photos) - set(camera.PHOTO_FILES)
        if unknown or not self.photos:
            raise ValueError(f"photos must name some of {sorted(camera.PHOTO_FILES)}; unknown: {sorted(unknown)}")
        self.photo_backgrounds = float(photo_backgrounds)
        self.photo_recolour = float(photo_recolour)
        self.camera_effects = float(camera_effects)
        self.occlusion = float(occlusion)
        self.truncation = float(truncation)
        self.distractors = float(distractors)
        self.whole_size_range = float(whole_size_range)

    # ------------------------------------------------------------------ scenes
    def sample(self, seed: int, n_queries: int = 4) -> Sample:
        rng = np.random.default_rng(seed)
        scene = self.scene(rng)
        return Sample(scene=scene, queries=self.queries(scene, rng, n_queries))

    def scene(self, rng: np.random.Generator) -> Scene:
        W, H = self.resolutions[int(rng.integers(len(self.resolutions)))]
        scale = min(W, H) / REFERENCE_SIDE
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        placed: list[_Placed] = []
        for _ in range(n):
            p = self._place(rng, placed, W, H, scale)
            if p is not None:
                placed.append(p)
        if self.photo_backgrounds and rng.random() < self.photo_backgrounds:
            name, img = camera.photo_background(rng, W, H, self.photos)
            bg_kind = "photo:" + name
            if self.photo_recolour and rng.random() < self.photo_recolour:
                img = camera.recolour(rng, img)
        else:
            bg_kind, img = render.background(rng, W, H, scale)
        for p in placed:  # paint colour through the exact masks, later objects on top
            h, w = p.full.shape
            src = render.const_image(h, w, p.rgb)
            cv2.copyTo(src, p.full.view(np.uint8), img[p.y0:p.y0 + h, p.x0:p.x0 + w])
        if self.lighting:
            img = render.apply_lighting(rng, img, bg_kind == "noise")
        if self.camera_effects and rng.random() < self.camera_effects:
            img = camera.camera_effects(rng, img)
        objects, distractors = [], []
        for p in placed:
            vis = p.vis
            rows = np.flatnonzero(vis.any(axis=1))
            cols = np.flatnonzero(vis.any(axis=0))
            box = (float(p.x0 + cols[0]), float(p.y0 + rows[0]),
                   float(p.x0 + cols[-1] + 1), float(p.y0 + rows[-1] + 1))
            m = np.zeros((H, W), bool)
            h, w = vis.shape
            m[p.y0:p.y0 + h, p.x0:p.x0 + w] = vis
            (distractors if p.distractor else objects).append(
                SceneObject(colour=p.attrs[1], shape=p.attrs[2], size=p.attrs[0], box=box, mask=m,
                            size_px=p.size_px, visible_fraction=p.vis_area / p.full_area))
        return Scene(image=img, objects=objects, distractors=distractors, background=bg_kind)

    def _place(self, rng, placed, W, H, scale):
        distractor = bool(self.distractors) and rng.random() < self.distractors
        if distractor:  # an unknown colour (any shape) or a known colour with an unknown shape
            if rng.random() < 0.5:
                colour = tuple(DISTRACTOR_COLOURS)[int(rng.integers(len(DISTRACTOR_COLOURS)))]
                shapes = SHAPES + DISTRACTOR_SHAPES
            else:
                colour = _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
                shapes = DISTRACTOR_SHAPES
            shape = shapes[int(rng.integers(len(shapes)))]
            nominal = DISTRACTOR_COLOURS.get(colour, COLOURS.get(colour))
            size, (lo, hi) = None, DISTRACTOR_SIZE_RANGE
        else:
            size = SIZES[int(rng.integers(2))]
            colour = _COLOUR_NAMES[int(rng.integers(len(_COLOUR_NAMES)))]
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            nominal = COLOURS[colour]
        rgb = np.clip(np.array(nominal) + rng.integers(-15, 16, 3), 0, 255).astype(np.uint8)
        if not distractor:
            if self.whole_size_range and rng.random() < self.whole_size_range:
                size, (lo, hi) = None, (SMALL_SIZE_RANGE[0], LARGE_SIZE_RANGE[1])
            else:
                lo, hi = SMALL_SIZE_RANGE if size == "small" else LARGE_SIZE_RANGE
        min_vf = self.min_visible_fraction
        for attempt in range(40):
            if attempt % 10 == 0:  # (re)sample extent + rotation, shrinking on failure
                frac = rng.uniform(0.0, 1.0) * (1.0 - attempt / 40.0)
                extent = (lo + frac * (hi - lo)) * scale
                if shape == "square":
                    angle = rng.uniform(-math.pi / 6, math.pi / 6)
                else:
                    angle = rng.uniform(0.0, 2 * math.pi)
                verts, (l, t, r, b) = render.half_extents(shape, extent, angle)
            cx, cy = self._centre(rng, placed, (l, t, r, b), W, H)
            x0, y0, full = render.render_shape(shape, extent, verts, cx, cy)
            area = int(np.count_nonzero(full))
            if area * min_vf < MIN_VISIBLE_AREA:
                continue
            x0, y0, full = render.clip_to_frame(x0, y0, full, W, H)
            inside = int(np.count_nonzero(full))
            if inside < min_vf * area or inside < MIN_VISIBLE_AREA:
                continue
            h, w = full.shape
            ok = True
            updates = []
            for q in placed:
                qh, qw = q.vis.shape
                ix0, iy0 = max(x0, q.x0), max(y0, q.y0)
                ix1, iy1 = min(x0 + w, q.x0 + qw), min(y0 + h, q.y0 + qh)
                if ix0 >= ix1 or iy0 >= iy1:
                    continue
                a = full[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
                qsl = (slice(iy0 - q.y0, iy1 - q.y0), slice(ix0 - q.x0, ix1 - q.x0))
                ov = int(np.count_nonzero(a & q.vis[qsl]))
                if ov == 0:
                    continue
                left = q.vis_area - ov
                if left < min_vf * q.full_area or left < MIN_VISIBLE_AREA:
                    ok = False
                    break
                updates.append((q, qsl, a, left))
            if not ok:
                continue
            for q, qsl, a, left in updates:
                q.vis[qsl] &= ~a
                q.vis_area = left
            if size is None:
                size = _size_word(extent / scale)
            return _Placed((size, colour, shape), rgb, float(extent), x0, y0, full, area, distractor)
        return None

    def _centre(self, rng, placed, half_extents, W, H) -> tuple[float, float]:
        """A shape's centre: inside the frame; or (``truncation``) across a border by 10-45 % of its
        width or height; or (``occlusion``) on another object's box."""
        l, t, r, b = half_extents
        if self.truncation and rng.random() < self.truncation:
            side, cut = int(rng.integers(4)), rng.uniform(0.10, 0.45)
            if side < 2:  # left or right border
                cx = l - cut * (l + r) if side == 0 else W - 1.0 - r + cut * (l + r)
                return cx, rng.uniform(t + 1.0, H - 2.0 - b)
            cy = t - cut * (t + b) if side == 2 else H - 1.0 - b + cut * (t + b)
            return rng.uniform(l + 1.0, W - 2.0 - r), cy
        if self.occlusion and placed and rng.random() < self.occlusion:
            other = placed[int(rng.integers(len(placed)))]
            h, w = other.full.shape
            cx = float(np.clip(rng.uniform(other.x0, other.x0 + w), l + 1.0, W - 2.0 - r))
            cy = float(np.clip(rng.uniform(other.y0, other.y0 + h), t + 1.0, H - 2.0 - b))
            return cx, cy
        return rng.uniform(l + 1.0, W - 2.0 - r), rng.uniform(t + 1.0, H - 2.0 - b)

    # ----------------------------------------------------------------- queries
    def queries(self, scene: Scene, rng: np.random.Generator, n: int) -> list[Query]:
        ctx = _QueryContext(scene, rng, self.verbose_prob, self.plural_several)
        out: list[Query] = []
        seen: set[str] = set()
        for _ in range(n):
            q = None
            for _retry in range(3):
                q = ctx.generate(self.query_weights)
                if q.prompt not in seen:
                    break
            seen.add(q.prompt)
            out.append(q)
        return out


class SceneMix:
    """Scenes from several generators, one drawn per seed by weight (a training mix of conditions);
    deterministic given the seed, like a single generator."""

    _STREAM = 0x5CE7E  # the draw's own stream: the chosen generator renders from the seed itself

    def __init__(self, parts: Sequence[tuple[float, SceneGenerator]]):
        weights = np.array([float(w) for w, _ in parts])
        if not len(parts) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("a scene mix needs parts with weights >= 0 and a positive sum")
        self.generators = [g for _, g in parts]
        self.cumulative = np.cumsum(weights) / weights.sum()

    def sample(self, seed: int, n_queries: int = 4) -> Sample:
        u = np.random.default_rng([seed, self._STREAM]).random()
        index = min(int(np.searchsorted(self.cumulative, u, side="right")), len(self.generators) - 1)
        return self.generators[index].sample(seed, n_queries)


class _QueryContext:
    def __init__(self, scene: Scene, rng, verbose_prob: float, plural_several: float = 0.0):
        H, W = scene.image.shape[:2]
        self.W, self.H = W, H
        self.margin = POSITION_MARGIN * min(W, H) / REFERENCE_SIDE
        self.rng = rng
        self.verbose_prob = verbose_prob
        self.plural_several = plural_several
        self.attrs = [(o.size, o.colour, o.shape) for o in scene.objects]
        self.boxes = [tuple(float(v) for v in o.box) for o in scene.objects]
        self.centres = [(0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3])) for b in self.boxes]
        self.n = len(self.attrs)
        # (colour, shape, blocks even without a size word) of what no description may fit:
        # distractors, and objects between the size bands for descriptions with a size word.
        self.blockers = ([(o.colour, o.shape, True) for o in scene.distractors]
                         + [(a[1], a[2], False) for a in self.attrs if a[0] not in SIZES])

    # helpers -------------------------------------------------------------
    def matches(self, desc, exclude=()) -> list[int]:
        return [i for i, a in enumerate(self.attrs) if i not in exclude and _match(desc, a)]

    def usable(self, desc) -> bool:
        """Whether a description may be used: its size (if any) is a size word, and it fits no distractor
        (by colour and shape, whatever the size) and, when it has a size word, no object between the bands."""
        if desc[0] is not None and desc[0] not in SIZES:
            return False
        return not any((always or desc[0] is not None) and _match((None, desc[1], desc[2]), (None, colour, shape))
                       for colour, shape, always in self.blockers)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def generate(self, weights) -> Query:
        w = [float(x) for x in weights]
        while True:
            total = sum(w)
            if total <= 0:  # every kind failed (e.g. empty scene): fall back on absent
                q = self.absent()
                assert q is not None
                return q
            u = self.rng.random() * total
            k = 0
            while k < len(w) - 1 and (u >= w[k] or w[k] == 0.0):
                u -= w[k]
                k += 1
            q = getattr(self, QUERY_KINDS[k])()
            if q is not None:
                return q
            w[k] = 0.0

    def _rel_ok(self, t, ref_c, others, sign) -> bool:
        m = self.margin
        if sign * (self.centres[t][0] - ref_c[0]) < m:
            return False
        return all(sign * (self.centres[o][0] - ref_c[0]) < 0.5 * m for o in others)

    def _extreme_ok(self, t, others, axis, sign) -> bool:
        m = self.margin
        v = self.centres[t][axis]
        return all(sign * (v - self.centres[o][axis]) >= m for o in others)

    # single ----------------------------------------------------------------
    def _attr_forms(self, t):
        forms = []
        a = self.attrs[t]
        for mask in _ATTR_MASKS:
            d = _desc(a, mask)
            if len(self.matches(d)) == 1 and self.usable(d):
                forms.append((sum(mask), "the " + noun_phrase(d)))
        return forms

    def _position_forms(self, t):
        forms = []
        a = self.attrs[t]
        for mask in BASE_MASKS:
            d = _desc(a, mask)
            group = self.matches(d)
            if len(group) < 2 or not self.usable(d):
                continue
            others = [o for o in group if o != t]
            for word, (axis, sign) in POSITION_WORDS.items():
                if self._extreme_ok(t, others, axis, sign):
                    forms.append((10 + sum(mask), f"the {word} {noun_phrase(d)}"))
        return forms

    def _relation_forms(self, t):
        forms = []
        a = self.attrs[t]
        for r in range(self.n):
            if r == t:
                continue
            ref_forms = [(c, p) for c, p in self._attr_forms(r)]
            if not ref_forms:
                continue
            cmin = min(c for c, _ in ref_forms)
            ref_phrase = self.pick([p for c, p in ref_forms if c == cmin])
            for mask in _ATTR_MASKS:
                d = _desc(a, mask)
                if not self.usable(d):
                    continue
                others = [o for o in self.matches(d) if o != t and o != r]
                for word, sign in RELATION_WORDS.items():
                    if self._rel_ok(t, self.centres[r], others, sign):
                        forms.append((20 + sum(mask) + cmin, f"the {noun_phrase(d)} {word} {ref_phrase}"))
        return forms

    def single(self):
        order = self.rng.permutation(self.n)
        verbose = self.rng.random() < self.verbose_prob
        for t in order:
            t = int(t)
            forms = self._attr_forms(t)
            if verbose or not forms:
                forms = forms + self._position_forms(t)
                if not forms or (verbose and self.rng.random() < 0.25):
                    forms = forms + self._relation_forms(t)
            if not forms:
                continue
            if verbose:
                phrase = self.pick(forms)[1]
            else:
                cmin = min(c for c, _ in forms)
                phrase = self.pick([p for c, p in forms if c == cmin])
            prompt = self.pick(SINGLE_TEMPLATES).format(phrase)
            return Query(kind="single", prompt=prompt, targets=(t,), phrase=phrase)
        return None

    # plural ------------------------------------------------------------------
    def _plural_phrase(self, d):
        noun = "shape" if self.rng.random() < 0.3 else "object"
        if self.rng.random() < 0.2:
            phrase = "every " + noun_phrase(d, plural=False, noun=noun)
            templates = PLURAL_TEMPLATES[:-1]
        else:
            phrase = "all the " + noun_phrase(d, plural=True, noun=noun)
            templates = PLURAL_TEMPLATES
        return phrase, self.pick(templates).format(phrase)

    def plural(self):
        if self.n == 0:
            return None
        several = self._describing_several() if self.plural_several and self.rng.random() < self.plural_several else []
        if several:
            d = self.pick(several)
        else:
            for _attempt in range(20):  # the first draw, unless distractors or unnamed sizes block it
                t = int(self.rng.integers(self.n))
                if self.rng.random() < 0.05:
                    mask = _ATTR_MASKS[0]
                else:
                    mask = _ATTR_MASKS[1 + int(self.rng.integers(len(_ATTR_MASKS) - 1))]
                d = _desc(self.attrs[t], mask)
                if self.usable(d):
                    break
            else:
                return None
        targets = _sort_targets(self.matches(d), self.centres)
        phrase, prompt = self._plural_phrase(d)
        return Query(kind="plural", prompt=prompt, targets=targets, phrase=phrase)

    def _describing_several(self) -> list:
        """Every description (one to three attributes) that fits two or more objects, in a fixed order."""
        found = {_desc(a, mask) for a in self.attrs for mask in _ATTR_MASKS[1:]}
        return sorted((d for d in found if len(self.matches(d)) >= 2 and self.usable(d)),
                      key=lambda d: tuple(v or "" for v in d))

    # absent -------------------------------------------------------------------
    def absent(self):
        rng = self.rng
        d = None
        for attempt in range(30):
            if self.n and attempt < 20:  # change one attribute of a present object
                a = list(self.attrs[int(rng.integers(self.n))])
                mask = _ATTR_MASKS[1 + int(rng.integers(len(_ATTR_MASKS) - 1))]
                used = [i for i in range(3) if mask[i]]
                i = used[int(rng.integers(len(used)))]
                vocab = (SIZES, _COLOUR_NAMES, SHAPES)[i]
                a[i] = self.pick([v for v in vocab if v != a[i]])
                cand = _desc(a, mask)
            else:  # random description
                mask = _ATTR_MASKS[4 + int(rng.integers(4))]
                cand = _desc((self.pick(SIZES), self.pick(_COLOUR_NAMES), self.pick(SHAPES)), mask)
            if not self.matches(cand) and self.usable(cand):
                d = cand
                break
        if d is None:
            return None
        if rng.random() < 0.6:
            phrase = "the " + noun_phrase(d)
            prompt = self.pick(SINGLE_TEMPLATES).format(phrase)
        else:
            phrase, prompt = self._plural_phrase(d)
        return Query(kind="absent", prompt=prompt, targets=(), phrase=phrase)

    # describe -----------------------------------------------------------------
    def describe(self):
        named = [i for i, a in enumerate(self.attrs) if a[0] in SIZES]  # the answer names the size
        if not named:
            return None
        t = named[int(self.rng.integers(len(named)))]
        x0, y0, x1, y1 = self.boxes[t]
        bw, bh = x1 - x0, y1 - y0
        j = self.rng.uniform(-0.03, 0.03, 4) * (bw, bh, bw, bh)
        box = (float(np.clip(x0 + j[0], 0, self.W)), float(np.clip(y0 + j[1], 0, self.H)),
               float(np.clip(x1 + j[2], 0, self.W)), float(np.clip(y1 + j[3], 0, self.H)))
        size, colour, shape = self.attrs[t]
        answer = f"{size} {colour} {shape}"
        return Query(kind="describe", prompt=self.pick(DESCRIBE_TEMPLATES), targets=(),
                     phrase="the " + answer, input_boxes=(box,), answer_text=answer)

    # relation_box --------------------------------------------------------------
    def relation_box(self):
        options = []
        for r in range(self.n):
            rc = self.centres[r]
            for t in range(self.n):
                if t == r:
                    continue
                for mask in BASE_MASKS:
                    d = _desc(self.attrs[t], mask)
                    if not self.usable(d):
                        continue
                    others = [o for o in self.matches(d) if o != t and o != r]
                    for word, sign in RELATION_WORDS.items():
                        if self._rel_ok(t, rc, others, sign):
                            options.append((t, r, d, word))
        if not options:
            return None
        t, r, d, word = self.pick(options)
        expr = f"the {noun_phrase(d)} {word}"
        prompt = self.pick(SINGLE_TEMPLATES).format(expr + " <box>")
        return Query(kind="relation_box", prompt=prompt, targets=(t,), phrase=expr + " the box",
                     input_boxes=(self.boxes[r],))
