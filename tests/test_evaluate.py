import numpy as np

from nst_jax.evals import evaluate
from nst_jax.vgg import vgg19


def test_score_is_zero_for_identical_and_grows_with_difference():
    params = vgg19.random_params(0)
    rng = np.random.RandomState(0)
    a = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    b = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    same = evaluate.score(params, a, a, a)
    diff = evaluate.score(params, a, b, b[::-1])
    assert diff["structure"] > 0 and diff["style"] > 0
    # Different compiled layer sets may round differently: near zero.
    assert same["structure"] <= 1e-6 * diff["structure"]
    assert same["style"] <= 1e-6 * diff["style"]
