import pytest


@pytest.fixture(scope="session")
def real_params():
    """The real VGG19 weights: fetched once into the user cache, then read."""
    from nst_jax import weights
    return weights.load_vgg19_params()
