"""A run's peak memory, estimated from its sizes before any work is done.

The estimate (:func:`estimate`) is a sum of parts, in bytes:

* runtime: Python, JAX and the compiled programs (CPU only);
* params: VGG19's weights and the transposed kernel copies of the
  input-gradient convolutions;
* activations: what one loss-and-gradient evaluation keeps, per output
  pixel a linear function of the layers used (:func:`activation_floats`),
  with constants fitted to XLA's own buffer sizes of the compiled step
  (``memory_analysis()``, six layer sets, remat none and blocks);
* optimiser: image-sized float32 vectors (L-BFGS: two per history pair
  plus the line search's points; Adam: two moments and the iterates);
* targets: the content layers' features;
* host: the host's copies of the images (CPU only).

The constants below are fitted to measured peaks on a CPU; the measured
table, the fit's residuals and its history are in docs/performance.md
("Memory" and "How the estimate's constants were fitted"). On GPU the
constants are the CPU ones: uncalibrated there, as no GPU was at hand.
Whether a run fits what the machine has is :mod:`nst_jax.memory`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

from nst_jax.plan import Plan
from nst_jax.vgg import tiling, vgg19

_F32 = 4
# Activation floats per output pixel = a * S + b * W + c, where S sums
# channels / stride^2 over every conv up to the deepest layer and W over
# the layers the loss reads (see activation_floats). Least squares of the
# compiled step's temporaries per pixel over six layer sets; residuals and
# refits: see docs/performance.md, Memory.
_ACT = {"none": (1.847, 1.086, -97.8), "blocks": (0.040, 0.675, 228.9),
        # The layers past the tiled head: "blocks" as before its last
        # refit, which fits the tiled programs with no constant.
        "tiles": (0.867, 0.388, 0.0)}
# Under remat="tiles", block-1-sized maps ((tile + 2 halo)^2 x 64 floats)
# alive at once while one tile's gradient is taken (per tile size: see
# docs/performance.md, Memory).
_TILE_MAPS = 7
# Image-sized float32 vectors the optimiser adds (3 floats per pixel
# each): L-BFGS's state holds 2 per history pair plus ~6, its line search
# more in flight; Adam's state ~5 (see docs/performance.md, Memory).
_LBFGS_EXTRA, _ADAM, _SGD = 8, 5, 4
_VMAPPED = ("adam", "sgd")  # Members vmapped (activations per member).
# What else the process's peak RSS grows by per pixel on CPU (host copies
# of the images, the init and metrics programs, allocator slack), in
# floats, and the process's baseline (Python, JAX, XLA, compiling the
# step; the weights not included), fitted to measured peaks. One slope for
# every remat, so the estimate errs high with tiles rather than low; one
# intercept per optimiser (see docs/performance.md, Memory).
_HOST_FLOATS = 90.0
_RUNTIME_CPU = {"lbfgs": 630 * 2 ** 20, "other": 500 * 2 ** 20}
_RUNTIME_TILES_LBFGS = 40 * 2 ** 20
_PARAM_COPIES = 2  # The weights, and each kernel flipped and transposed.


class Estimate(NamedTuple):
    """An estimated peak, in bytes, and where it is spent."""
    total: int
    parts: dict  # name -> bytes
    hw: tuple  # (H, W) of the largest scale.
    members: int  # Members sharing this memory.
    where: str  # "host" (CPU RSS) or "device".


def channels(layer: str) -> int:
    """Output channels of a VGG19 layer (conv, relu or pool)."""
    if layer.startswith("pool"):
        block = layer[len("pool"):]
        return [o for n, (_, o) in vgg19.CONV_CHANNELS.items()
                if n.startswith(f"conv{block}_")][-1]
    return vgg19.CONV_CHANNELS["conv" + layer[4:]][1]


def _per_pixel(layers) -> float:
    return sum(channels(l) / vgg19.STRIDE[l] ** 2 for l in layers)


def activation_floats(layers, remat: str = "none") -> float:
    """Floats per output pixel one gradient evaluation keeps at its peak.

    Args:
      layers: the layers the loss reads (content and style).
      remat: one of ``losses.REMATS``; for "tiles" the per-pixel part
        (the tiles' own buffers are :func:`tile_bytes`).
    """
    layers = tuple(dict.fromkeys(layers))
    stop = vgg19.LAYERS.index(vgg19.deepest(layers))
    convs = [n for n in vgg19.LAYERS[:stop + 1] if n.startswith("conv")]
    if remat == "tiles":  # Only what runs whole: the layers past the head.
        head = set(tiling.head(layers))
        convs = [n for n in convs if n not in head]
        layers = tuple(l for l in layers if l not in head)
    a, b, c = _ACT[remat]
    return a * _per_pixel(convs) + b * _per_pixel(layers) + c


def tile_bytes(layers, tile: int, hw: tuple[int, int]) -> int:
    """What one tile of ``remat="tiles"`` holds, whatever the image size."""
    head = tiling.head(tuple(layers))
    side = tiling.tile_side(head, tile, hw)
    return int(_F32 * _TILE_MAPS * 64 * (side + 2 * tiling.halo(head)) ** 2)


def optimiser_vectors(name: str, memory_size: int) -> float:
    """Image-sized float32 vectors an optimiser keeps and uses per step."""
    if name == "lbfgs":
        return 2 * memory_size + _LBFGS_EXTRA
    return _ADAM if name == "adam" else _SGD


def output_hw(plan: Plan) -> tuple[int, int]:
    """(H, W) of the largest scale, as the plan read it from the content's
    header; a square of the largest long side for a plan that read no
    header (:func:`nst_jax.plan.fields`)."""
    sizes = [s.size for s in plan.scales]
    size = max(sizes)
    if plan.content_hw is None:
        return size, size
    return plan.content_hw[sizes.index(size)]


def _params_bytes() -> int:
    return _F32 * sum(math.prod(s) for p in vgg19.param_shapes().values()
                      for s in p.values())


def estimate(plan: Plan, members: int = 1,
             hw: Optional[tuple[int, int]] = None,
             platform: str = "cpu") -> Estimate:
    """Estimated peak memory of a method=gatys run (or group of members).

    Args:
      plan: a checked plan.
      members: members sharing this memory (a sweep group's share of
        one device, or of a CPU host); Adam and SGD members are vmapped,
        L-BFGS members mapped one after another.
      hw: (H, W) of the largest scale; default from the content's header.
      platform: "cpu" counts the whole process (host RSS); otherwise the
        device's share only.
    """
    h, w = hw or output_hw(plan)
    px = h * w
    layers = tuple(plan.loss.content_layers) + tuple(
        plan.loss.style_layers)
    if plan.portrait.enabled:
        layers += tuple(plan.portrait.local_layers)
    o = plan.optim
    compute = 0.5 if plan.model.dtype == "bfloat16" else 1.0
    act = activation_floats(layers, plan.model.remat) * compute
    per_member = act if o.name in _VMAPPED else 0.0
    tiles = 0
    if plan.model.remat == "tiles":
        tiles = tile_bytes(layers, plan.model.tile_size, (h, w)) * compute
        tiles *= members if o.name in _VMAPPED else 1
    parts = {
        "params": _PARAM_COPIES * _params_bytes(),
        "activations": _F32 * px * (act + per_member * (members - 1)) + tiles,
        "optimiser": _F32 * px * 3 * optimiser_vectors(
            o.name, o.memory_size) * members,
        "targets": _F32 * px * _per_pixel(plan.loss.content_layers),
    }
    if platform == "cpu":
        parts["runtime"] = _RUNTIME_CPU.get(o.name, _RUNTIME_CPU["other"])
        if plan.model.remat == "tiles" and o.name == "lbfgs":
            parts["runtime"] += _RUNTIME_TILES_LBFGS
        parts["host"] = _F32 * px * _HOST_FLOATS
    parts = {k: int(v) for k, v in parts.items()}
    return Estimate(sum(parts.values()), parts, (h, w), members,
                    "host" if platform == "cpu" else "device")

