"""Landmark files, the thin-plate-spline flow, the committed hand-placed
landmarks and the local style yardstick built on them."""

import json
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

from nst_jax.errors import UserError
from nst_jax.evals import evaluate
from nst_jax.portrait import alignment, landmarks, tps

DATA = pathlib.Path(__file__).parent / "data" / "landmarks"
ROOT = pathlib.Path(__file__).parents[1]
IMAGES = {
    "astronaut": ROOT / "nst_jax" / "assets" / "content.jpg",
    "grace_hopper": ROOT.parent / "shared/images/content/grace_hopper.jpg",
    "vangogh_self_portrait":
        ROOT.parent / "shared/images/style/vangogh_self_portrait.jpg",
    "mona_lisa": ROOT.parent / "shared/images/style/mona_lisa.jpg",
    "woman_with_hat": ROOT.parent / "shared/images/style/woman_with_hat.jpg",
}
PHOTOS = ("astronaut", "grace_hopper")
PAINTINGS = ("vangogh_self_portrait", "mona_lisa", "woman_with_hat")

_GOOD_XY = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80], [50, 95]]
_GOOD = {"image": "face.jpg", "size": [100, 120], "points": _GOOD_XY,
         "names": ["a", "b", "c", "d", "e", "f"]}


def _write(tmp_path, data, name="face.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _with(**changes):
    return {**_GOOD, **changes}


def _grid(h, w):
    return np.stack(np.mgrid[:h, :w], axis=-1).astype(np.float64)


# --- files -----------------------------------------------------------------

_BAD_FILES = {
    "not json": ("{not json", "not valid JSON"),
    "not an object": ("[1, 2]", "JSON object"),
    "missing key": ({k: v for k, v in _GOOD.items() if k != "names"},
                    "missing keys"),
    "misspelled key": ({**_GOOD, "point": []}, "unknown keys"),
    "image not a name": (_with(image=3), "image must be"),
    "size of one": (_with(size=[100]), "size must be [width, height]"),
    "size zero": (_with(size=[0, 120]), "positive"),
    "point triple": (_with(points=[[1, 2, 3]] + _GOOD_XY[1:]), "pairs"),
    "point string": (_with(points=[["30", 40]] + _GOOD_XY[1:]), "pairs"),
    "point bool": (_with(points=[[True, 40]] + _GOOD_XY[1:]), "pairs"),
    "names not strings": (_with(names=[1, 2, 3, 4, 5, 6]), "strings"),
    "names count": (_with(names=["a", "b", "c", "d", "e"]), "but 5 names"),
    "names repeated": (_with(names=["a", "b", "c", "d", "e", "a"]),
                       "repeated names"),
    "four points": (_with(points=_GOOD_XY[:4], names=list("abcd")),
                    "at least 5"),
    "nan": (json.dumps(_GOOD).replace("[50, 95]", "[NaN, 95]"),
            "NaN or infinite"),
    "infinity": (json.dumps(_GOOD).replace("[50, 95]", "[50, Infinity]"),
                 "NaN or infinite"),
    "right of the image": (_with(points=_GOOD_XY[:5] + [[103, 95]]),
                           "outside"),
    "above the image": (_with(points=_GOOD_XY[:5] + [[50, -2]]), "outside"),
    "coincide": (_with(points=_GOOD_XY[:5] + [[30, 40]]), "coincide"),
    "on one line": (_with(points=[[10 + 10 * i, 20 + 5 * i]
                                  for i in range(6)]), "one line"),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_bad_file_is_one_line_naming_it(tmp_path, case):
    data, fragment = _BAD_FILES[case]
    path = _write(tmp_path, data)
    with pytest.raises(UserError) as e:
        landmarks.load(path, (120, 100))
    msg = str(e.value)
    assert fragment in msg and str(path) in msg and "\n" not in msg


def test_missing_file_and_aspect_mismatch(tmp_path):
    with pytest.raises(UserError, match="cannot be read"):
        landmarks.read(tmp_path / "nowhere.json")
    path = _write(tmp_path, _GOOD)
    with pytest.raises(UserError, match="aspect ratio") as e:
        landmarks.load(path, (100, 100))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_load_rescales_each_axis_with_pixel_centres(tmp_path):
    path = _write(tmp_path, _GOOD)
    pts = landmarks.load(path, (60, 50))   # half size, rounded sides
    assert pts.dtype == np.float32 and pts.shape == (6, 2)
    want = (np.asarray(_GOOD_XY, np.float64)[:, ::-1] + 0.5) * 0.5 - 0.5
    np.testing.assert_allclose(pts, want, atol=1e-5)
    # A resize that rounds a side by one pixel is the same picture.
    assert landmarks.load(path, (121, 100)).shape == (6, 2)
    np.testing.assert_allclose(landmarks.load(path, (120, 100)),
                               np.asarray(_GOOD_XY)[:, ::-1])


def test_check_pair_refuses_other_counts_and_names(tmp_path):
    a = landmarks.read(_write(tmp_path, _GOOD, "a.json"))
    b = landmarks.read(_write(tmp_path, _with(
        names=["a", "b", "c", "d", "f", "e"]), "b.json"))
    c = landmarks.read(_write(tmp_path, _with(
        points=_GOOD_XY[:5], names=list("abcde")), "c.json"))
    landmarks.check_pair(a, a)
    with pytest.raises(UserError, match="names") as e:
        landmarks.check_pair(a, b)
    assert "a.json" in str(e.value) and "b.json" in str(e.value)
    with pytest.raises(UserError, match="6 points.*5"):
        landmarks.check_pair(a, c)
    with pytest.raises(UserError, match="6 points.*5"):
        landmarks.check_pair(a.points_xy, c.points_xy)


# --- the spline flow -------------------------------------------------------

def _face_points(rng, lo, hi, n=9):
    # Integer positions, so the flow's own grid holds the landmarks.
    return rng.integers(lo, hi, (n, 2)).astype(np.float64)


def test_flow_sends_each_landmark_to_its_partner():
    rng = np.random.default_rng(0)
    content = _face_points(rng, 15, 50)
    style = content + rng.normal(0, 4, content.shape)
    flow = landmarks.warp_flow(content, style, (64, 80), (64, 80))
    assert flow.shape == (64, 80, 2) and flow.dtype == np.float32
    iy, ix = content.T.astype(int)
    np.testing.assert_allclose(flow[iy, ix], style, atol=1e-3)


def test_flow_is_identity_for_equal_points():
    pts = _face_points(np.random.default_rng(1), 10, 40)
    flow = landmarks.warp_flow(pts, pts, (48, 56), (48, 56))
    np.testing.assert_allclose(flow, _grid(48, 56), atol=1e-4)


@pytest.mark.parametrize("matrix", [
    [[0.8 * math.cos(0.1), -0.8 * math.sin(0.1)],
     [0.8 * math.sin(0.1), 0.8 * math.cos(0.1)]],    # rotate and shrink
    [[0.7, 0.1], [0.0, 0.9]],                         # squash and shear
])
def test_affine_points_give_that_affine_flow_everywhere(matrix):
    h, w = 60, 70
    centre = np.array([(h - 1) / 2, (w - 1) / 2])

    def affine(p):
        return (p - centre) @ np.asarray(matrix).T + centre + [1.5, -2.0]

    content = _face_points(np.random.default_rng(2), 20, 45)
    flow = landmarks.warp_flow(content, affine(content), (h, w), (h, w))
    grid = _grid(h, w)
    want = affine(grid.reshape(-1, 2)).reshape(grid.shape)
    assert want.min() >= 0 and np.all(want.max((0, 1)) <= [h - 1, w - 1])
    np.testing.assert_allclose(flow, want, atol=1e-3)


def test_far_from_the_face_the_flow_is_the_affine_part():
    h = w = 200
    rng = np.random.default_rng(3)
    content = _face_points(rng, 85, 115)
    style = content + rng.normal(0, 3, content.shape)
    flow = landmarks.warp_flow(content, style, (h, w), (h, w), clip=False)
    pts = _grid(h, w).reshape(-1, 2)
    affine, bend = tps.parts(
        tps.fit(content, style), pts)
    dist = tps.hull_distance(content, pts).reshape(h, w)
    band = landmarks.BLEND_BAND * np.ptp(content, axis=0).max()
    far, inside = dist > band, dist == 0
    assert far.any() and inside.any()
    # The spline alone bends the corners by pixels; the flow does not.
    assert np.abs(bend.reshape(h, w, 2)[far]).max() > 1.0
    np.testing.assert_allclose(flow[far], affine.reshape(h, w, 2)[far],
                               atol=1e-3)
    np.testing.assert_allclose(flow[inside],
                               (affine + bend).reshape(h, w, 2)[inside],
                               atol=1e-3)
    # Smooth across the band: no step between neighbouring pixels.
    assert np.abs(np.diff(flow, axis=0)).max() < 3.0
    assert np.abs(np.diff(flow, axis=1)).max() < 3.0


def _face_and_scaled(seed: int, scale: float):
    """Face points and the same face ``scale`` times as large (+ noise)."""
    rng = np.random.default_rng(seed)
    content = _face_points(rng, 45, 75)
    centre = content.mean(0)
    return content, (content - centre) * scale + centre + rng.normal(
        0, 2, content.shape)


def test_clamped_flow_stays_finite_inside_the_style_frame():
    # The style face three times as large: the affine part alone leaves
    # the frame far from the face.
    content, style = _face_and_scaled(4, 3.0)
    loose = landmarks.warp_flow(content, style, (120, 120), (90, 110),
                                clip=False)
    assert loose.min() < -50 and loose.max() > 150
    flow = landmarks.warp_flow(content, style, (120, 120), (90, 110))
    assert np.all(np.isfinite(flow))
    assert flow.min() >= 0
    assert flow[..., 0].max() <= 89 and flow[..., 1].max() <= 109


def test_frame_anchors_pin_the_border_and_keep_the_face():
    # A face twice as large in the painting: unpinned, the affine part
    # reaches past the painting's edge; pinned, the frame maps onto the
    # frame and the face onto the face.
    content, style = _face_and_scaled(6, 2.0)
    loose = landmarks.warp_flow(content, style, (120, 120), (120, 120),
                                clip=False)
    assert loose.min() < -10
    flow = landmarks.warp_flow(content, style, (120, 120), (120, 120),
                               clip=False, frame_anchors=True)
    iy, ix = content.T.astype(int)
    np.testing.assert_allclose(flow[iy, ix], style, atol=1e-3)
    for y, x in ((0, 0), (0, 119), (119, 0), (119, 119)):
        np.testing.assert_allclose(flow[y, x], [y, x], atol=1e-3)
    # Between the pins the border stays (nearly) on the border.
    assert np.abs(flow[0, :, 0]).max() < 1.0
    assert np.abs(flow[:, -1, 1] - 119).max() < 1.0
    assert flow.min() > -1.0 and flow.max() < 120.0


def test_to_frame_and_warp_image_map_pixel_centres():
    pts = np.array([[0.0, 0.0], [9.0, 19.0]])
    np.testing.assert_allclose(landmarks.to_frame(pts, (10, 20), (20, 10)),
                               [[0.5, -0.25], [18.5, 9.25]])
    rng = np.random.default_rng(5)
    style = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
    content = _face_points(rng, 5, 35)
    warped, flow = landmarks.warp_image(style, content, content, (40, 50))
    np.testing.assert_allclose(warped, style, atol=1e-3)
    assert flow.shape == (40, 50, 2)


# --- the committed, hand-placed landmarks ---------------------------------

def _committed():
    return {p.stem: landmarks.read(p) for p in sorted(DATA.glob("*.json"))}


def test_committed_landmarks_are_complete_and_inside_their_images():
    files = _committed()
    assert set(files) == set(IMAGES)
    for stem, lm in files.items():
        assert lm.names == landmarks.NAMES, stem
        (w, h), xy = lm.size_wh, lm.points_xy
        assert np.all((xy >= 0) & (xy <= [w - 1, h - 1])), stem
        if IMAGES[stem].exists():
            with Image.open(IMAGES[stem]) as im:
                assert im.size == (w, h), stem
        p = dict(zip(lm.names, xy))
        # Anatomy, as a check on the hand placement: (x, y), y down.
        assert p["left_eye"][1] < p["nose_tip"][1] < p["mouth_centre"][1]
        assert p["right_eye"][1] < p["nose_tip"][1] < p["chin"][1]
        assert p["mouth_centre"][1] < p["chin"][1], stem
        assert (p["face_left"][0] < p["left_eye"][0] < p["right_eye"][0]
                < p["face_right"][0]), stem
        assert (p["mouth_left"][0] < p["mouth_centre"][0]
                < p["mouth_right"][0]), stem


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("painting", PAINTINGS)
def test_committed_pairs_give_a_warp_without_folds(photo, painting,
                                                   anchored):
    files = _committed()
    (cw, ch), (sw, sh) = files[photo].size_wh, files[painting].size_wh
    hw = (128, round(128 * cw / ch))   # the photo at long side ~128
    content = landmarks.load(DATA / f"{photo}.json", hw)
    style = landmarks.load(DATA / f"{painting}.json", (sh, sw))
    flow = landmarks.warp_flow(content, landmarks.to_frame(style, (sh, sw),
                                                           hw),
                               hw, hw, clip=False, frame_anchors=anchored)
    dy, dx = np.gradient(flow[..., 0]), np.gradient(flow[..., 1])
    assert np.all(dy[0] * dx[1] - dy[1] * dx[0] > 0)


# --- the local style yardstick ---------------------------------------------

N = 192
# Landmarks whose 1.25x box is exactly [16, 176) on both axes: a 4x4 grid
# of 40 px cells, 5 relu4_1 positions each, aligned to the stride.
_PTS = np.array([[32, 32], [32, 159], [159, 32], [159, 159], [95, 95],
                 [60, 120], [120, 60], [80, 40], [140, 100]], np.float64)
_EDGES = [16, 56, 96, 136, 176]


def _mosaic(seed, n=N):
    """An n x n image whose 40 px cells each hold their own texture."""
    rng = np.random.default_rng(seed)
    img = np.empty((n, n, 3), np.float32)
    for y in range(0, n, 40):
        for x in range(0, n, 40):
            cell = rng.integers(2, 9)
            coarse = rng.normal(size=(40 // cell + 3, 40 // cell + 3, 3))
            grid = (np.stack(np.mgrid[:40, :40], -1) + 0.5) / cell
            tile = alignment.warp(coarse, grid)
            tile = tile * rng.uniform(20, 60) + rng.uniform(60, 200, 3)
            img[y:y + 40, x:x + 40] = tile[:n - y, :n - x]
    return np.clip(img, 0, 255)



def test_local_style_is_zero_for_the_painting_itself(params):
    painting = _mosaic(0)
    assert evaluate.face_box(_PTS, (N, N)) == (16, 16, 176, 176)
    same = evaluate.local_style(params, painting, painting, _PTS, _PTS)
    other = evaluate.local_style(params, _mosaic(1), painting, _PTS, _PTS)
    assert same["cells"].shape == other["cells"].shape == (2, 4, 4)
    assert other["overall"] > 0 and np.all(other["cells"] > 0)
    assert same["overall"] <= 1e-6 * other["overall"]
    for layer in evaluate.LOCAL_LAYERS:
        assert 0 <= same[layer] <= 1e-6 * other[layer]
    # Geometric mean over layers of the per-layer means.
    np.testing.assert_allclose(other["overall"], np.sqrt(
        other["relu3_1"] * other["relu4_1"]), rtol=1e-6)


def test_local_style_follows_the_landmarks(params):
    # The painting seen 8 px further down and right: with landmarks that
    # say so, the morph undoes the shift and the face cells agree again.
    big = _mosaic(2, N + 8)
    painting, output = big[:N, :N], big[8:, 8:]
    pts = _PTS * 0.75
    shifted = evaluate.local_style(params, output, painting, pts,
                                   pts + 8, grid=2)
    unaligned = evaluate.local_style(params, output, painting, pts, pts,
                                     grid=2)
    assert shifted["overall"] <= 1e-4 * unaligned["overall"]


def test_local_style_is_local(params):
    painting = _mosaic(3)
    output = painting.copy()
    a, b = (slice(16, 56),) * 2, (slice(136, 176),) * 2
    output[a], output[b] = painting[b], painting[a]
    cells = evaluate.local_style(params, output, painting, _PTS,
                                 _PTS)["cells"]
    swapped = np.minimum(cells[:, 0, 0], cells[:, 3, 3])
    assert np.all(swapped > 0)
    for i in range(4):
        for j in range(4):
            near = min(max(i, j), max(3 - i, 3 - j))
            # Beyond the neighbours, out of reach of relu4_1's receptive
            # field (68 px): untouched.
            if near >= 2:
                assert np.all(cells[:, i, j] <= 1e-6 * swapped), (i, j)
            elif near == 1:
                assert np.all(cells[:, i, j] < 0.1 * swapped), (i, j)


def test_local_style_refuses_cells_below_two_positions(params):
    painting = _mosaic(4)
    with pytest.raises(ValueError, match="smaller grid"):
        evaluate.local_style(params, painting, painting, _PTS, _PTS,
                             grid=11)
