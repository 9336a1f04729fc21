"""A run's peak memory, estimated from its sizes before any work is done.

:func:`check` runs with the other preflight checks (``nst_jax.app.runner``),
before any image is decoded or run directory made, and refuses with one
line (exit status 2) a run whose estimate exceeds the memory this process
can get: on CPU the least of MemAvailable (plus what the process already
holds), the cgroup's limit and RLIMIT_AS; on an accelerator the device's
``bytes_limit`` less what is in use. ``NST_JAX_MEMORY_CHECK=warn`` turns
the refusal into a warning and runs anyway; ``=off`` skips the check.

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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import resource
import warnings
from typing import NamedTuple, Optional

import jax
import ml_collections
from PIL import Image

from nst_jax import config as cfg
from nst_jax.drive import inputs
from nst_jax.errors import UserError
from nst_jax.vgg import tiling, vgg19

log = logging.getLogger(__name__)

ENV = "NST_JAX_MEMORY_CHECK"
_MODES = ("on", "warn", "off")
_GIB = 2.0 ** 30
_F32 = 4
# Activation floats per output pixel = a * S + b * W + c, where S sums
# channels / stride^2 over every conv up to the deepest layer and W over
# the layers the loss reads (see activation_floats). Least squares over
# six layer sets (content relu1_2..relu5_2 with 1-5 style layers): the
# compiled one-step L-BFGS chunk's temporary buffers per pixel (256 vs
# 512 px) less its line search's 12 vectors. Residuals and the refit
# history: see docs/performance.md, "How the estimate's constants were
# fitted".
_ACT = {"none": (1.847, 1.086, -97.8), "blocks": (0.040, 0.675, 228.9),
        # The layers past the tiled head, as "blocks" were before the last
        # refit (the tiled program hardly changed with it); they fit the
        # tiled programs' temporaries with no constant.
        "tiles": (0.867, 0.388, 0.0)}
# Under remat="tiles", block-1-sized maps ((tile + 2 halo)^2 x 64 floats)
# alive at once while one tile's gradient is taken: XLA's temporaries at
# 512, 768 and 1024 px less the per-pixel part (per tile size: see
# docs/performance.md).
_TILE_MAPS = 7
# Image-sized float32 vectors the optimiser adds (3 floats per pixel
# each): L-BFGS's state holds 2 per history pair plus ~6, its line search
# more in flight; Adam's state ~5. (L-BFGS's was higher while XLA copied
# the whole history every step; see loop.step.)
_LBFGS_EXTRA, _ADAM, _SGD = 8, 5, 4
_VMAPPED = ("adam", "sgd")  # Members vmapped (activations per member).
# What else the process's peak RSS grows by per pixel on CPU (host copies
# of the images, the init and metrics programs, allocator slack), in
# floats, and the process's baseline (Python, JAX, XLA, compiling the
# step; the weights not included): fitted to the measured peaks at 512
# and 1024 px, L-BFGS and Adam, each remat, and 2048 px with tiles (one
# fresh process each, memory freed by compiling handed back before the
# steps). One slope for every remat, chosen so the estimate errs high with
# tiles rather than low at 2048 px; one intercept per optimiser. The
# slopes and intercepts found: see docs/performance.md, "How the
# estimate's constants were fitted".
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


def output_hw(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(H, W) of the largest scale, from the content file's header only.

    Falls back to a square (the most pixels a long side allows) when the
    header cannot be read; the file's real problems are reported by
    ``inputs.check``.
    """
    size = max(s for s, _ in cfg.scales(config))
    try:
        with warnings.catch_warnings():  # Bombs are inputs.check's job.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(inputs.content_path(config))
        with im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # Rotated 90.
                w, h = h, w
    except Exception:  # Unreadable, missing, a folder: inputs.check says.
        return size, size
    if h >= w:
        return size, max(1, int(round(w * size / h)))
    return max(1, int(round(h * size / w))), size


def _params_bytes() -> int:
    return _F32 * sum(math.prod(s) for p in vgg19.param_shapes().values()
                      for s in p.values())


def estimate(config: ml_collections.ConfigDict, members: int = 1,
             hw: Optional[tuple[int, int]] = None,
             platform: str = "cpu") -> Estimate:
    """Estimated peak memory of a method=gatys run (or group of members).

    Args:
      config: a validated config.
      members: members sharing this memory (a sweep group's share of
        one device, or of a CPU host); Adam and SGD members are vmapped,
        L-BFGS members mapped one after another.
      hw: (H, W) of the largest scale; default from the content's header.
      platform: "cpu" counts the whole process (host RSS); otherwise the
        device's share only.
    """
    h, w = hw or output_hw(config)
    px = h * w
    layers = tuple(config.loss.content_layers) + tuple(
        config.loss.style_layers)
    if config.portrait.enabled:
        layers += tuple(config.portrait.local_layers)
    o = config.optim
    compute = 0.5 if config.model.dtype == "bfloat16" else 1.0
    act = activation_floats(layers, config.model.remat) * compute
    per_member = act if o.name in _VMAPPED else 0.0
    tiles = 0
    if config.model.remat == "tiles":
        tiles = tile_bytes(layers, config.model.tile_size, (h, w)) * compute
        tiles *= members if o.name in _VMAPPED else 1
    parts = {
        "params": _PARAM_COPIES * _params_bytes(),
        "activations": _F32 * px * (act + per_member * (members - 1)) + tiles,
        "optimiser": _F32 * px * 3 * optimiser_vectors(
            o.name, o.memory_size) * members,
        "targets": _F32 * px * _per_pixel(config.loss.content_layers),
    }
    if platform == "cpu":
        parts["runtime"] = _RUNTIME_CPU.get(o.name, _RUNTIME_CPU["other"])
        if config.model.remat == "tiles" and o.name == "lbfgs":
            parts["runtime"] += _RUNTIME_TILES_LBFGS
        parts["host"] = _F32 * px * _HOST_FLOATS
    parts = {k: int(v) for k, v in parts.items()}
    return Estimate(sum(parts.values()), parts, (h, w), members,
                    "host" if platform == "cpu" else "device")


def release_freed() -> None:
    """Hands memory the process has freed back to the system (glibc's
    ``malloc_trim``; nothing elsewhere).

    XLA's compilers and finished programs free many blocks that glibc
    keeps in its arenas, and the steps' peak came on top of them (how
    much: see docs/performance.md, "What lowered the peak").
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # Not glibc.
        pass


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit.


def _status_bytes(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def host_available() -> tuple[Optional[int], str]:
    """Bytes this process could hold in all, and which limit says so.

    The least of: MemAvailable, the cgroup's limit less its usage (v2,
    else v1), RLIMIT_AS less the address space in use; each plus the
    process's own RSS. (None, "") where none of them can be read.
    """
    rss = _status_bytes("VmRSS") or 0
    found = []
    free = _meminfo_available()
    if free is not None:
        found.append((rss + free, "MemAvailable"))
    for limit, usage, name in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
             "cgroup memory.max"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "cgroup memory.limit_in_bytes")):
        lim, used = _read_int(limit), _read_int(usage)
        if lim is not None and lim < 2 ** 60:
            found.append((rss + lim - (used or 0), name))
            break
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    vm = _status_bytes("VmSize")
    if soft != resource.RLIM_INFINITY and vm is not None:
        found.append((rss + soft - vm, "RLIMIT_AS"))
    if not found:
        return None, ""
    return min(found)


def device_available(device=None) -> tuple[Optional[int], str]:
    """The accelerator's bytes_limit less bytes_in_use, or (None, "")."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # Backends without memory statistics.
        return None, ""
    if "bytes_limit" not in stats:
        return None, ""
    return (stats["bytes_limit"] - stats.get("bytes_in_use", 0),
            f"{device.device_kind} bytes_limit")


def _fitting_size(config: ml_collections.ConfigDict, est: Estimate,
                  available: int, platform: str) -> int:
    """The largest long side whose estimate fits ``available`` bytes."""
    h, w = est.hw
    fixed = estimate(config, est.members, (1, 1), platform).total
    per_px = (est.total - fixed) / max(h * w - 1, 1)
    if available <= fixed or per_px <= 0:
        return 0
    scale = math.sqrt((available - fixed) / per_px / (h * w))
    return int(max(h, w) * scale) // 8 * 8


def refusal(config: ml_collections.ConfigDict, est: Estimate,
            available: int, source: str, platform: str) -> str:
    """The one-line message of a run that does not fit."""
    h, w = est.hw
    fit = _fitting_size(config, est, available, platform)
    advice = [f"lower the output size (--config.size, or the largest "
              f"multiscale.sizes) to about {fit} px" if fit >= 16 else
              "no output size fits here"]
    if config.model.remat != "tiles":
        tiles = estimate(cfg.override(config, {"model.remat": "tiles"}),
                         est.members, est.hw, platform).total
        advice.append(f"set --config.model.remat=tiles (about "
                      f"{tiles / _GIB:.1f} GiB)")
    advice.append("run on a device with more memory")
    what = (f"{est.members} members at {w}x{h} px" if est.members > 1
            else f"a {w}x{h} px run")
    return (f"{what} needs about {est.total / _GIB:.1f} GiB of "
            f"{est.where} memory but {available / _GIB:.1f} GiB is available "
            f"({source}): {'; or '.join(advice)}; or set {ENV}=warn to try "
            "anyway")


def check(config: ml_collections.ConfigDict, members: int = 1
          ) -> Optional[Estimate]:
    """Refuses a run (or group of ``members``) that cannot fit in memory.

    Returns:
      The estimate (also where no limit could be read), or None where
      nothing was estimated (method=fast, or the check turned off).

    Raises:
      UserError: one line with the estimate, the memory available and
        what to change; a warning instead with NST_JAX_MEMORY_CHECK=warn.
    """
    mode = os.environ.get(ENV, "on").strip().lower() or "on"
    if mode not in _MODES:
        raise UserError(f"{ENV}={mode!r}; use one of {', '.join(_MODES)}")
    if mode == "off" or config.method != "gatys":
        return None
    platform = jax.default_backend()
    # Members are split over every device; a CPU host's devices share its
    # memory, so there a host's share counts.
    share = jax.process_count() if platform == "cpu" else jax.device_count()
    est = estimate(config, -(-members // share), platform=platform)
    available, source = (host_available() if platform == "cpu"
                         else device_available())
    if available is None or est.total <= available:
        return est
    message = refusal(config, est, available, source, platform)
    if mode == "warn":
        log.warning("%s", message)
        return est
    raise UserError(message)
