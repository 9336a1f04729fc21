import os

# Tests compile far more than they compute: XLA's optimisation passes cost
# more than they save at test sizes (about 20% of the suite's time). Set
# before jax is imported, so scripts the tests start inherit it too.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The scripts turn on JAX's persistent compilation cache in the user's
# cache directory (nst_jax/app/compile_cache.py); tests, and the scripts they
# start, leave it off unless a test asks for one in tmp_path.
os.environ["NST_JAX_COMPILE_CACHE"] = "0"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def real_params():
    """The real VGG19 weights: fetched once into the user cache, then read."""
    from nst_jax.weights import vgg as vgg_weights
    return vgg_weights.load_vgg19_params()


@pytest.fixture(scope="session")
def params():
    """Random VGG19 weights (seed 0), drawn once per test process: drawing
    all 20M takes seconds on a CPU."""
    from nst_jax.vgg import vgg19
    return vgg19.random_params(0)
