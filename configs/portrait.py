"""Head-portrait preset after Selim, Elgharib & Doyle 2016.

The content loss is computed on gain-modulated targets at relu3_1 and
relu4_1 (plus a plain relu4_2 target that holds the layout): gain
G = F[aligned painting] / (F[photo] + 1e-4), clamped to [0.7, 5] as in the
paper, target = F[photo] * G. The painting is aligned to the photo first:

- with face landmarks (portrait.content_landmarks / style_landmarks, JSON
  point files, format in nst_jax/landmarks.py) and align=landmarks, by a
  thin-plate spline through them, the frame's border pinned to the
  painting's border (the paper warps with landmarks, then refines);
- without them (align=features, the default), by coarse-to-fine PatchMatch
  over VGG19 features (relu5_1 .. relu2_1, nst_jax/patchmatch.py); where
  its forward and backward matches disagree the gains fade to 1.

    python scripts/run.py --config=configs/portrait.py
    python scripts/run.py --config=configs/portrait.py \
        --config.content=me.jpg --config.style=self_portrait.jpg \
        --config.portrait.align=landmarks \
        --config.portrait.content_landmarks=me.json \
        --config.portrait.style_landmarks=self_portrait.json

Coarse to fine: 100 L-BFGS steps at 128 px lay the face out, then 200 at
256 px, started from the fast network's painting (init=fast).

Weights: the gained layers weigh 5 and relu4_2 1; style weight 4e-3 (4x
configs/default.py). Chosen on Grace Hopper and the astronaut, each with
Van Gogh's straw-hat self-portrait and hand-placed landmarks, against
configs/default.py with this schedule (scripts/portrait_eval.py, 256 px):
local style distance x0.955 / x0.927 and structure x0.975 / x0.974. With
the content-layer weights at 1 and style 1e-3: local x0.996, structure
x0.88 (Hopper); 10 / 1e-2: x0.929 / x0.961 at structure x1.04 / x1.04;
20 / 2e-2: x0.901 / x0.926 at x1.05 / x1.05. The goal of 15% lower local
distance at equal structure is not reached (README, "Portrait preset").

With no paths it paints the embedded NASA astronaut portrait in the style of
the embedded Starry Night (features alignment): 308 s on this project's
2-core CPU (one run, by scripts/gallery.py, no persistent compile cache).
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "portrait"
    c.size = 256  # CPU-friendly; use 512+ on a GPU.
    # Gain-modulated relu3_1 and relu4_1 (the paper's layers) plus the plain
    # relu4_2 target of Gatys 2016, which holds the face's layout.
    c.loss.content_layers = ("relu3_1", "relu4_1", "relu4_2")
    c.loss.content_layer_weights = (5.0, 5.0, 1.0)
    c.loss.style_weight = 4e-3
    c.portrait.enabled = True
    c.portrait.layers = ("relu3_1", "relu4_1")
    c.optim.steps = 200
    c.multiscale.sizes = (128, 256)
    c.multiscale.steps = (100, 200)
    c.save_every = 50
    c.init = "fast"
    return cfg.lock(c)
