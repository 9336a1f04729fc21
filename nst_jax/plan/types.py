"""The typed run plan: what a config says, as frozen dataclasses.

A :class:`Plan` mirrors the config's sections and field names
(``plan.loss.style_weight`` is ``config.loss.style_weight``), with the
defaults resolved: the embedded images stand in for empty ``content`` and
``style``, and ``scales`` lists (long side, steps) coarse to fine with the
content's (H, W) at each from one header read. Everything below the plan
(``nst_jax.drive``, the run directory, checkpoints) reads a Plan, never a
config. :func:`from_config` copies fields without checking or reading
anything; :func:`nst_jax.plan.build` is the checked way to make one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple, Optional

from nst_jax import config as cfg

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "assets")
DEFAULT_CONTENT = os.path.join(ASSETS, "content.jpg")
DEFAULT_STYLE = os.path.join(ASSETS, "style.jpg")


@dataclasses.dataclass(frozen=True)
class Model:
    pooling: str
    weights: str
    dtype: str
    remat: str
    tile_size: int


@dataclasses.dataclass(frozen=True)
class Loss:
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    content_layer_weights: tuple[float, ...]
    style_layer_weights: tuple[float, ...]
    content_weight: float
    style_weight: float
    tv_weight: float
    style_loss: str
    sliced_projections: int
    mrf_max_pairs: int


@dataclasses.dataclass(frozen=True)
class Optim:
    name: str
    learning_rate: float
    schedule: str
    decay_rate: float
    steps: int
    memory_size: int
    ema_decay: float
    rtol: float
    rtol_window: int


@dataclasses.dataclass(frozen=True)
class Color:
    preserve: str
    match_method: str


@dataclasses.dataclass(frozen=True)
class Multiscale:
    sizes: tuple[int, ...]
    steps: tuple[int, ...]
    last_style_layers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Portrait:
    enabled: bool
    layers: tuple[str, ...]
    g_min: float
    g_max: float
    align: str
    match_layers: tuple[str, ...]
    match_size: int
    content_landmarks: str
    style_landmarks: str
    face_weights: str
    content_mask: str
    style_mask: str
    flow: str
    local_layers: tuple[str, ...]
    local_weight: float
    local_grid: int


@dataclasses.dataclass(frozen=True)
class Fast:
    weights: str
    strength: float
    style_size: int


class Scale(NamedTuple):
    size: int  # Long side in px.
    steps: int


_SECTIONS = {"model": Model, "loss": Loss, "optim": Optim, "color": Color,
             "multiscale": Multiscale, "portrait": Portrait, "fast": Fast}


@dataclasses.dataclass(frozen=True)
class Plan:
    """One run (one photo), typed and resolved."""
    name: str
    method: str
    content: str  # One photo's path (the embedded one for "").
    style: tuple[str, ...]  # Style paths (the embedded one for ()).
    style_blend: tuple[float, ...]
    style_scale: float
    masks: tuple[str, ...]
    size: int
    max_pixels: int
    seed: int
    init: str
    init_path: str
    model: Model
    loss: Loss
    optim: Optim
    color: Color
    multiscale: Multiscale
    portrait: Portrait
    fast: Fast
    log_every: int
    compile_cache: str
    save_every: int
    plot_layers: bool
    checkpoint_every: int
    resume: str
    #: (long side, steps) per scale, coarse to fine.
    scales: tuple[Scale, ...]
    #: The content's (H, W) at each scale, from its header; None until
    #: :func:`nst_jax.plan.build` read it.
    content_hw: Optional[tuple[tuple[int, int], ...]] = None
    #: The config as a JSON-native nested dict (written as config.json,
    #: compared on resume); not part of what the plan computes.
    config: dict = dataclasses.field(default_factory=dict, compare=False,
                                     repr=False)

    def replace(self, **changes: Any) -> "Plan":
        """A copy with top-level fields or dotted section fields changed:
        ``plan.replace(**{"model.remat": "tiles"})``."""
        top, nested = {}, {}
        for key, value in changes.items():
            section, _, field = key.partition(".")
            if field:
                nested.setdefault(section, {})[field] = value
            else:
                top[key] = value
        for section, fields in nested.items():
            top[section] = dataclasses.replace(getattr(self, section),
                                               **fields)
        return dataclasses.replace(self, **top)


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _scales(c) -> tuple[Scale, ...]:
    sizes = tuple(c.multiscale.sizes) or (c.size,)
    steps = tuple(c.multiscale.steps) or (c.optim.steps,) * len(sizes)
    return tuple(Scale(*s) for s in zip(sizes, steps))


def from_config(c: "cfg.Config") -> Plan:
    """The plan of ``c``, fields copied as they are (nothing checked or
    read; see :func:`nst_jax.plan.build`)."""
    style = c.style
    if isinstance(style, str):  # Tolerate a bare string from Python callers.
        style = (style,) if style else ()
    top = {f.name: _value(c[f.name]) for f in dataclasses.fields(Plan)
           if f.name in c and f.name not in _SECTIONS}
    sections = {name: kind(**{f.name: _value(c[name][f.name])
                              for f in dataclasses.fields(kind)})
                for name, kind in _SECTIONS.items()}
    top.update(content=c.content or DEFAULT_CONTENT,
               style=tuple(style) or (DEFAULT_STYLE,))
    return Plan(**top, **sections, scales=_scales(c), config=cfg.to_dict(c))


def flat(plan: Plan) -> dict[str, Any]:
    """{dotted field: value} of what the plan computes (its recorded
    config dict left out)."""
    out = {}
    for f in dataclasses.fields(plan):
        v = getattr(plan, f.name)
        if f.name == "config":
            continue
        if dataclasses.is_dataclass(v):
            for g in dataclasses.fields(v):
                out[f"{f.name}.{g.name}"] = getattr(v, g.name)
        else:
            out[f.name] = v
    return out
