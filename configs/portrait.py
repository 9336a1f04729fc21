"""Head-portrait preset after Selim, Elgharib & Doyle 2016.

The content loss is computed on gain-modulated targets at relu3_1 and
relu4_1 (plus a plain relu4_2 target that holds the layout): gain
G = F[aligned painting] / (F[photo] + 1e-4), clamped to [0.7, 5] as in the
paper, target = F[photo] * G. The painting is aligned to the photo first
(portrait.align):

- auto (this preset's default): the faces are found on the photo and on
  the painting (nst_jax/faces: MediaPipe's BlazeFace and Face Mesh, run in
  Flax) and a thin-plate spline through their nine named points morphs the
  painting onto the photo, the frame's border pinned to the painting's
  border. Landmark files, when given, are used instead of detection. When
  either image shows no face (the embedded Starry Night), the run says so
  and aligns by features;
- landmarks: the same morph through the landmark files
  (portrait.content_landmarks / style_landmarks, format in
  nst_jax/portrait/landmarks.py; scripts/landmarks.py writes them from
  detection);
- features: coarse-to-fine PatchMatch over VGG19 features (relu5_1 ..
  relu2_1, nst_jax/portrait/patchmatch.py); where its forward and backward
  matches disagree the gains fade to 1.

    python scripts/run.py --config=configs/portrait.py
    python scripts/run.py --config=configs/portrait.py \
        --config.content=me.jpg --config.style=self_portrait.jpg

Local style (portrait.local_*): the frame is cut into 3x3 cells and each
cell's Grams at relu1_1..relu4_1 are matched to the same cell of the
aligned painting, so the hat's strokes go to the head and the coat's to the
coat; the whole-image Gram keeps a small weight.

Coarse to fine: 100 L-BFGS steps at 128 px lay the face out, then up to
200 at 256 px (a scale stops once the loss has flattened, optim.rtol),
started from the fast network's painting (init=fast). The whole-image
Gram's deepest layer, relu5_1, is matched at 128 px only (at a single
scale, at every size).

Weights: gained layers 5, relu4_2 1; local style 1.5e-4; whole-image style
1e-4, chosen with scripts/portrait_eval.py on Grace Hopper x Van Gogh's
straw-hat self-portrait; the figures that chose them, and how the preset
compares with configs/default.py, are in docs/portrait.md.
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
    # The whole-image Gram at relu5_1 only at 128 px: at 256 px it is the
    # one term that needs conv4_3 .. conv5_1, and it weighs little there.
    # Figures: docs/performance.md, "relu5_1 only at 128 px".
    c.multiscale.last_style_layers = ("relu1_1", "relu2_1", "relu3_1",
                                      "relu4_1")
    # A scale stops once 50 steps lowered the loss by < 3%: the 256 px
    # scale's last steps barely change the loss or the face yardsticks,
    # while fewer 128 px steps would cost on the yardsticks. Figures:
    # docs/performance.md, "Stopping when converged".
    c.optim.rtol = 0.03
    c.optim.rtol_window = 50
    c.save_every = 50
    c.init = "fast"
    return cfg.lock(c)
