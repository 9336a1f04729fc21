import numpy as np

from nst_jax import evaluate, vgg19


def test_score_is_zero_for_identical_and_grows_with_difference():
    params = vgg19.random_params(0)
    rng = np.random.RandomState(0)
    a = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    b = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    same = evaluate.score(params, a, a, a)
    assert same["structure"] == 0.0 and same["style"] == 0.0
    diff = evaluate.score(params, a, b, b[::-1])
    assert diff["structure"] > 0 and diff["style"] > 0
