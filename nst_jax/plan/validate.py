"""Checks of a plan's fields: every range, whether or not the chosen mode
uses the field, and the combinations a run cannot do; nothing is read
from disk (see :func:`nst_jax.plan.build` for the input files).

The option lists here are the documented choices of ``nst_jax/config.py``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from nst_jax.errors import UserError
from nst_jax.optimize import color, losses
from nst_jax.plan import program
from nst_jax.plan.types import Plan
from nst_jax.style import mrf, terms
from nst_jax.vgg import vgg19

OPTIMIZERS = ("adam", "lbfgs", "sgd")
SCHEDULES = ("constant", "cosine", "exponential")
INITS = ("content", "noise", "style", "file", "fast")
METHODS = ("gatys", "fast")
ALIGN = ("none", "auto", "features", "landmarks", "masks", "flow")
DTYPES = ("float32", "bfloat16")

def _finite_nonneg(name: str, v) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise UserError(f"{name} must be a number, got {v!r}")
    if math.isnan(v) or math.isinf(v) or v < 0:
        raise UserError(f"{name} must be a finite number >= 0, got {v!r}")


def _choice(name: str, v, options) -> None:
    if v not in options:
        raise UserError(f"{name} must be one of {', '.join(options)}; "
                        f"got {v!r}")


def _layers(name: str, layers, weights_name: str, weights) -> None:
    if not layers:
        raise UserError(f"{name} is empty; give at least one VGG19 layer")
    try:
        vgg19.check_layers(layers)
    except ValueError as e:
        raise UserError(f"{name}: {e}") from None
    if weights and len(weights) != len(layers):
        raise UserError(f"{weights_name} has {len(weights)} entries but "
                        f"{name} has {len(layers)}; give one weight per "
                        "layer or () for all 1")
    for i, w in enumerate(weights):
        _finite_nonneg(f"{weights_name}[{i}]", w)


def check(c: Plan) -> None:
    """Checks everything that can be checked without reading files.

    Raises:
      UserError: one line naming the field, the problem and what to do.
    """
    L = c.loss
    _layers("loss.content_layers", L.content_layers,
            "loss.content_layer_weights", L.content_layer_weights)
    _layers("loss.style_layers", L.style_layers,
            "loss.style_layer_weights", L.style_layer_weights)
    for k in ("content_weight", "style_weight", "tv_weight"):
        _finite_nonneg(f"loss.{k}", getattr(L, k))
    _choice("method", c.method, METHODS)
    _style_statistic(c)
    _finite_nonneg("fast.strength", c.fast.strength)
    if c.fast.strength > 1:
        raise UserError(f"fast.strength must be in [0, 1], got "
                        f"{c.fast.strength!r}")
    if not isinstance(c.fast.style_size, int) or c.fast.style_size < 32:
        raise UserError("fast.style_size must be an integer >= 32")
    if c.method == "fast" and (c.masks or c.portrait.enabled):
        raise UserError("method=fast has no masks or portrait gain maps; "
                        "use method=gatys for those")
    _choice("optim.name", c.optim.name, OPTIMIZERS)
    _choice("optim.schedule", c.optim.schedule, SCHEDULES)
    _choice("init", c.init, INITS)
    _choice("model.pooling", c.model.pooling, vgg19.POOLINGS)
    _choice("model.dtype", c.model.dtype, DTYPES)
    _choice("model.remat", c.model.remat, losses.REMATS)
    if (not isinstance(c.model.tile_size, int)
            or isinstance(c.model.tile_size, bool)
            or not 16 <= c.model.tile_size <= 8192):
        raise UserError("model.tile_size must be an integer 16..8192 (px), "
                        f"got {c.model.tile_size!r}")
    _choice("color.preserve", c.color.preserve, color.PRESERVE_MODES)
    _choice("color.match_method", c.color.match_method,
            color.MATCH_METHODS)
    _choice("portrait.align", c.portrait.align, ALIGN)
    _finite_nonneg("optim.learning_rate", c.optim.learning_rate)
    if c.optim.learning_rate == 0:
        raise UserError("optim.learning_rate must be > 0")
    if (c.method == "gatys" and c.optim.name == "lbfgs"
            and c.optim.schedule == "constant"
            and c.optim.learning_rate != 1.0):
        raise UserError(
            f"optim.learning_rate={c.optim.learning_rate!r} has no effect: "
            f"{inert_fields(c)['optim.learning_rate']}; leave it at 1.0, or "
            "use --config.optim.schedule=cosine (or exponential) to scale "
            "L-BFGS's steps")
    if not 0 <= c.optim.ema_decay < 1:
        raise UserError(f"optim.ema_decay must be in [0, 1), got "
                        f"{c.optim.ema_decay!r}")
    if c.init == "file" and not c.init_path:
        raise UserError("init is 'file' but init_path is empty; set "
                        "--config.init_path=IMAGE")
    if c.style_blend and len(c.style_blend) != len(c.style):
        raise UserError(f"style_blend has {len(c.style_blend)} weights for "
                        f"{len(c.style)} style image(s)")
    for i, w in enumerate(c.style_blend):
        _finite_nonneg(f"style_blend[{i}]", w)
    if c.style_blend and sum(c.style_blend) <= 0:
        raise UserError("style_blend weights sum to 0; give a positive one")
    if c.masks and len(c.masks) != len(c.style):
        raise UserError(f"{len(c.masks)} masks for {len(c.style)} "
                        "style image(s); give one mask per style")
    if not c.style_scale > 0:
        raise UserError(f"style_scale must be > 0, got {c.style_scale!r}")
    sizes = tuple(c.multiscale.sizes) or (c.size,)
    for s in sizes:
        if not isinstance(s, int) or s < 16:
            raise UserError(f"image sizes must be integers >= 16, got {s!r}")
    if c.multiscale.steps and len(c.multiscale.steps) != len(sizes):
        raise UserError("multiscale.steps needs one entry per "
                        "multiscale.sizes entry")
    for name in ("optim.steps", "log_every"):
        v = c.optim.steps if name == "optim.steps" else c.log_every
        if not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be an integer >= 1, got {v!r}")
    for s in c.multiscale.steps:
        if not isinstance(s, int) or s < 1:
            raise UserError(f"multiscale.steps entries must be >= 1, got {s!r}")
    last = c.multiscale.last_style_layers
    outside = isinstance(last, str) or any(l not in c.loss.style_layers
                                           for l in last)
    if outside or len(set(last)) != len(last):
        raise UserError(
            f"multiscale.last_style_layers = {last!r} must be distinct "
            f"layers of loss.style_layers {tuple(c.loss.style_layers)}")
    for name in ("save_every", "checkpoint_every"):
        if not isinstance(getattr(c, name), int) or getattr(c, name) < 0:
            raise UserError(f"{name} must be an integer >= 0")
    _validate_ranges(c)
    marks = (c.portrait.content_landmarks, c.portrait.style_landmarks)
    if c.portrait.enabled:
        missing = [l for l in c.portrait.layers
                   if l not in c.loss.content_layers]
        if missing:
            raise UserError(f"portrait.layers {missing} are not content "
                            "layers; add them to loss.content_layers (the "
                            "gain maps modulate content targets)")
        if any(marks) and not all(marks):
            raise UserError("give both portrait.content_landmarks and "
                            "portrait.style_landmarks, or neither")
        if c.portrait.align == "landmarks" and not all(marks):
            raise UserError("portrait.align=landmarks needs "
                            "portrait.content_landmarks and "
                            "portrait.style_landmarks (JSON point files)")


def _style_statistic(c: Plan) -> None:
    """``loss.style_loss`` and the combinations it cannot do."""
    L = c.loss
    _choice("loss.style_loss", L.style_loss, terms.NAMES)
    _int_in("loss.sliced_projections", L.sliced_projections, 0, 4096)
    _int_in("loss.mrf_max_pairs", L.mrf_max_pairs, 1)
    if L.style_loss == "gram" or c.method == "fast":
        return
    if c.masks and L.style_loss not in terms.MASKED:
        raise UserError(
            f"loss.style_loss={L.style_loss} has no guided (masked) form; "
            f"use masks with {' or '.join(terms.MASKED)}, or drop masks")
    if c.model.remat == "tiles":
        raise UserError(
            f"loss.style_loss={L.style_loss} needs whole feature maps; "
            "model.remat=tiles is for gram only (use none or blocks)")


def style_sizes(c: Plan, style_hws: list) -> None:
    """Checks ``loss.style_loss=mrf`` against the maps it will compare.

    ``style_hws``: per scale, each style image's (H, W) there.

    Raises:
      UserError: a layer's map too small for a 3x3 patch, or more
        (image patches x style patches) than ``loss.mrf_max_pairs``.
    """
    if c.loss.style_loss not in terms.PATCHES or c.method == "fast":
        return
    for si, ((h, w), styles) in enumerate(zip(c.content_hw, style_hws)):
        for l in program.style_layers(c, si):
            s = vgg19.STRIDE[l]
            n_img = mrf.count(h // s, w // s)
            for sh, sw in styles:
                n_sty = mrf.count(sh // s, sw // s)
                if not n_img or not n_sty:
                    raise UserError(
                        f"loss.style_loss=mrf: {l} of a {w}x{h} px image "
                        f"and a {sw}x{sh} px style has no 3x3 patch; use "
                        "shallower loss.style_layers or a larger size")
                if n_img * n_sty > c.loss.mrf_max_pairs:
                    raise UserError(
                        f"loss.style_loss=mrf: {l} at {w}x{h} px compares "
                        f"{n_img} image patches with {n_sty} style patches "
                        f"({n_img * n_sty:,} pairs > loss.mrf_max_pairs="
                        f"{c.loss.mrf_max_pairs:,}); use deeper "
                        "loss.style_layers (e.g. relu3_1,relu4_1), a "
                        "smaller size or style_scale, or raise the cap")


def _int_in(name: str, value, lo: int, hi: Optional[int] = None) -> None:
    if (not isinstance(value, int) or isinstance(value, bool) or value < lo
            or (hi is not None and value > hi)):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise UserError(f"{name} must be an integer {span}, got {value!r}")


def _validate_ranges(c: Plan) -> None:
    """Ranges of the fields the chosen mode may not use: a bad value is
    refused whether or not this run reads it (it would surprise the day
    the mode changes, and sweeps copy it to every member)."""
    _int_in("size", c.size, 16)
    _int_in("max_pixels", c.max_pixels, 1)
    _int_in("seed", c.seed, 0)
    _int_in("optim.memory_size", c.optim.memory_size, 1)
    _finite_nonneg("optim.rtol", c.optim.rtol)
    if c.optim.rtol >= 1:
        raise UserError(f"optim.rtol must be in [0, 1), got {c.optim.rtol!r}")
    _int_in("optim.rtol_window", c.optim.rtol_window, 1)
    if not 0 < c.optim.decay_rate <= 1:
        raise UserError("optim.decay_rate must be in (0, 1], got "
                        f"{c.optim.decay_rate!r}")
    P = c.portrait
    try:
        vgg19.check_layers(P.layers)
        vgg19.check_layers(P.match_layers)
    except ValueError as e:
        raise UserError(f"portrait layers: {e}") from None
    try:
        vgg19.check_layers(P.local_layers)
    except ValueError as e:
        raise UserError(f"portrait.local_layers: {e}") from None
    if not 0 < P.g_min <= P.g_max:
        raise UserError("portrait gain clamp needs 0 < g_min <= g_max")
    _int_in("portrait.match_size", P.match_size, 16, 4096)
    _int_in("portrait.local_grid", P.local_grid, 1, 16)
    _finite_nonneg("portrait.local_weight", P.local_weight)


def inert_fields(c: Plan) -> dict[str, str]:
    """{dotted field: why it has no effect} under ``c``.

    A sweep that varies only such a field would make identical members,
    so sweeps refuse it; a config refuses a non-default L-BFGS learning
    rate (see :func:`validate`).
    """
    o, P = c.optim, c.portrait
    out = {}
    if c.method == "fast":  # One forward pass: no VGG19, loss or optimiser.
        for section in ("model", "loss", "optim", "multiscale"):
            for f in dataclasses.fields(getattr(c, section)):
                out[f"{section}.{f.name}"] = "method=fast optimises nothing"
        for key in ("init", "init_path", "seed", "style_scale"):
            out[key] = "method=fast optimises nothing"
    elif c.init != "fast":
        for key in ("weights", "strength", "style_size"):
            out[f"fast.{key}"] = "only method=fast or init=fast use it"
    if o.name == "lbfgs" and o.schedule == "constant":
        out["optim.learning_rate"] = ("L-BFGS with the constant schedule "
                                      "takes the step its line search picks")
    if o.schedule != "exponential":
        out["optim.decay_rate"] = "only the exponential schedule uses it"
    if o.name != "lbfgs":
        out["optim.memory_size"] = "only L-BFGS keeps a history"
    if o.rtol == 0:
        out["optim.rtol_window"] = "optim.rtol is 0 (the rule is off)"
    if c.init != "noise":
        out.setdefault("seed", f"it seeds only init=noise (init is "
                               f"{c.init!r})")
    if c.init != "file":
        out.setdefault("init_path", "only init=file reads it")
    if c.model.remat != "tiles":
        out.setdefault("model.tile_size", "only model.remat=tiles uses it")
    if c.loss.style_loss != "sliced_w2":
        out.setdefault("loss.sliced_projections",
                       "only loss.style_loss=sliced_w2 uses it")
    if c.loss.style_loss != "mrf":
        out.setdefault("loss.mrf_max_pairs",
                       "only loss.style_loss=mrf uses it")
    if len(c.scales) < 2:
        out["multiscale.last_style_layers"] = (
            "a single-scale run has no last scale of its own")
    if c.color.preserve != "match":
        out["color.match_method"] = "only color.preserve=match uses it"
    if len(c.style) <= 1:
        out["style_blend"] = "there is only one style image"
    off = {"content_mask": ("masks",), "style_mask": ("masks",),
           "flow": ("flow",), "match_layers": ("features", "auto"),
           "match_size": ("features", "auto"),
           "content_landmarks": ("features", "landmarks", "auto"),
           "style_landmarks": ("features", "landmarks", "auto"),
           "face_weights": ("auto",)}
    if P.enabled and not P.local_layers:
        for field in ("local_weight", "local_grid"):
            out[f"portrait.{field}"] = "portrait.local_layers is empty"
    for field in ("layers", "g_min", "g_max", "align", "local_layers",
                  "local_weight", "local_grid", *off):
        if not P.enabled:
            out[f"portrait.{field}"] = "portrait.enabled is False"
        elif field in off and P.align not in off[field]:
            out[f"portrait.{field}"] = (f"only portrait.align="
                                        f"{' or '.join(off[field])} uses it")
    if P.enabled and P.align == "auto" and P.content_landmarks:
        for field in ("face_weights", "match_layers", "match_size"):
            out[f"portrait.{field}"] = ("portrait.align=auto with landmark "
                                        "files uses the files")
    return out
