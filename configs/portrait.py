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

Local style (portrait.local_*): the frame is cut into 3x3 cells and each
cell's Grams at relu1_1..relu4_1 are matched to the same cell of the
aligned painting, so the hat's strokes go to the head and the coat's to the
coat; the whole-image Gram keeps a small weight.

Coarse to fine: 100 L-BFGS steps at 128 px lay the face out, then 200 at
256 px, started from the fast network's painting (init=fast).

Weights: gained layers 5, relu4_2 1; local style 1.5e-4; whole-image style
1e-4. Measured against configs/default.py with this schedule
(scripts/portrait_eval.py, 256 px, align=landmarks, Van Gogh's straw-hat
self-portrait, hand-placed landmarks): local style distance x0.453 (Grace
Hopper) / x0.640 (astronaut), structure x0.988 / x0.974. Chosen on Hopper
with half the steps (50 + 100), local / structure: gains alone at style
4e-3 (the preset before local style) x1.022 / x0.952; local 4e-3 with
style 4e-3 x0.458 / x1.377; 1e-3, 4e-3: x0.558 / x1.284; 5e-4, 1e-3:
x0.496 / x1.139; 5e-4, 5e-4: x0.432 / x1.116; 2.5e-4, 2.5e-4: x0.447 /
x1.002; 1.5e-4, 1e-4: x0.469 / x0.905. The yardstick is a per-cell Gram
distance too (3x3 cells over the face box at relu3_1 and relu4_1), so it
is close to what this term optimises: README, "Portrait preset", says
how far that matters.

With no paths it paints the embedded NASA astronaut portrait in the style of
the embedded Starry Night (features alignment). On this project's 2-core
CPU, one run each, no persistent compile cache, `scripts/run.py` took
260 s with the preset as it was before the local style term and 290 s and
310 s with it (two runs of two versions of the same term); the term adds
5.4% to a loss-and-gradient evaluation at 256 px (1104 -> 1164 ms,
medians of 15, one process).
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
    # Local style (3x3 cells of the aligned painting) carries most of the
    # painting; the whole-image Gram only a little.
    c.loss.style_weight = 1e-4
    c.portrait.enabled = True
    c.portrait.align = "auto"
    c.portrait.layers = ("relu3_1", "relu4_1")
    c.portrait.local_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    c.portrait.local_weight = 1.5e-4
    c.optim.steps = 200
    c.multiscale.sizes = (128, 256)
    c.multiscale.steps = (100, 200)
    c.save_every = 50
    c.init = "fast"
    return cfg.lock(c)
