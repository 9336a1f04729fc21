"""Config contract: presets load, replay round-trips, bad values refused."""

import json
import os

import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import config_file
from nst_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_preset(name, arg=None):
    mod = config_file.load_module(os.path.join(ROOT, "configs",
                                               f"{name}.py"))
    return mod.get_config(arg) if arg is not None else mod.get_config()


@pytest.mark.parametrize("name", ["default", "seed_paper", "portrait",
                                  "tiny"])
def test_presets_validate_and_are_locked(name):
    c = load_preset(name)
    plan_lib.fields(c)
    with pytest.raises(AttributeError):
        c.loss.styel_weight = 1.0  # A typo must not create a field.


def test_seed_paper_layers_are_the_counted_convs():
    c = load_preset("seed_paper")
    assert c.loss.content_layers == ("relu1_2", "relu2_2", "relu3_3")
    assert c.loss.style_layers == ("relu1_2", "relu2_2", "relu4_2",
                                   "relu5_1")


def test_json_round_trip_is_exact():
    c = load_preset("portrait")
    c2 = cfg.from_json(cfg.to_json(c))
    assert c2.to_dict() == c.to_dict()
    assert isinstance(c2.loss.style_layers, tuple)
    json.loads(cfg.to_json(c))  # JSON-native.


def test_from_dict_rejects_unknown_fields():
    d = cfg.to_dict(cfg.base())
    d["loss"]["alpah"] = 1
    with pytest.raises(UserError, match="alpah"):
        cfg.from_dict(d)


@pytest.mark.parametrize("field,value,match", [
    ("loss.style_layers", ("relu9_9",), "unknown VGG19 layer"),
    ("loss.style_layers", ("relu1_1", "relu1_1"), "more than once"),
    ("loss.content_layers", (), "empty"),
    ("loss.style_weight", -1.0, "finite number >= 0"),
    ("loss.content_weight", float("nan"), "finite number >= 0"),
    ("loss.style_layer_weights", (1.0, 2.0), "one weight per layer"),
    ("optim.name", "adamw", "optim.name must be one of"),
    ("init", "zeros", "init must be one of"),
    ("color.preserve", "grey", "color.preserve"),
    ("size", 4, "sizes must be integers >= 16"),
    ("optim.ema_decay", 1.0, "ema_decay"),
    ("style_blend", (1.0, 1.0), "style_blend has 2 weights"),
    ("model.remat", "all", "model.remat"),
    ("model.tile_size", 8, "tile_size must be an integer 16..8192"),
])
def test_validate_names_the_bad_field(field, value, match):
    c = cfg.base()
    node, key = c, field
    if "." in field:
        sect, key = field.split(".")
        node = c[sect]
    node[key] = value
    with pytest.raises(UserError, match=match):
        plan_lib.fields(c)


def test_scales():
    c = cfg.base()
    c.multiscale.sizes = (64, 128)
    c.optim.steps = 7
    assert list(plan_lib.fields(c).scales) == [(64, 7), (128, 7)]
    c.multiscale.steps = (3, 2)
    assert list(plan_lib.fields(c).scales) == [(64, 3), (128, 2)]


@pytest.mark.parametrize("field,value,match", [
    ("local_layers", ("relu1_1", "fc7"), "unknown VGG19 layer"),
    ("local_grid", 0, "local_grid must be an integer 1..16"),
    ("local_weight", float("nan"), "finite number >= 0"),
])
def test_validate_names_a_bad_local_style_field(field, value, match):
    c = load_preset("portrait")
    with c.unlocked():
        c.portrait[field] = value
    with pytest.raises(UserError, match=match):
        plan_lib.fields(c)


def test_tile_size_is_inert_unless_tiles():
    c = cfg.base()
    assert "model.tile_size" in plan_lib.inert_fields(plan_lib.from_config(c))
    c.model.remat = "tiles"
    plan_lib.fields(c)
    assert "model.tile_size" not in plan_lib.inert_fields(plan_lib.from_config(c))


def test_face_weights_matter_only_when_auto_searches():
    c = cfg.base()
    c.portrait.enabled = True
    c.portrait.align = "auto"
    c.loss.content_layers = ("relu3_1", "relu4_1", "relu4_2")
    c.loss.content_layer_weights = (1.0, 1.0, 1.0)
    plan_lib.fields(c)
    inert = plan_lib.inert_fields(plan_lib.from_config(c))
    assert "portrait.face_weights" not in inert
    assert "portrait.match_size" not in inert  # The fallback uses it.
    c.portrait.content_landmarks = c.portrait.style_landmarks = "a.json"
    inert = plan_lib.inert_fields(plan_lib.from_config(c))
    assert "portrait.face_weights" in inert and "portrait.match_size" in inert
    c.portrait.align = "features"
    assert "portrait.face_weights" in plan_lib.inert_fields(plan_lib.from_config(c))


@pytest.mark.parametrize("field,value,match", [
    ("max_pixels", 0, "max_pixels"),
    ("size", 8, "size"),
    ("optim.memory_size", 0, "memory_size"),
    ("optim.decay_rate", 0.0, "decay_rate"),
    ("portrait.match_size", 8, "match_size"),
    ("portrait.local_grid", 0, "local_grid"),
    ("portrait.g_min", -1.0, "g_min"),
    ("portrait.layers", ("relu9_9",), "portrait layers"),
])
def test_ranges_are_checked_whatever_the_mode(field, value, match):
    # Adam with the portrait preset off and one scale set: none of these
    # fields is read by the run, and each is still refused.
    c = cfg.base()
    c.optim.name = "adam"
    c.multiscale.sizes = (64,)
    section, _, key = field.rpartition(".")
    (c[section] if section else c)[key] = value
    with pytest.raises(UserError, match=match):
        plan_lib.fields(c)
