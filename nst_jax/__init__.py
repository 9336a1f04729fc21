"""nst_jax: neural style transfer (Gatys et al. 2016) in JAX and Flax."""

__version__ = "0.1.0"
