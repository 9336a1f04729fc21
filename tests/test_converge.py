"""The convergence rule (optim.rtol): stops a flattened scale, not a
falling one; resumes and sweeps stop where the solo run does."""

import io
import json

import numpy as np
import pytest

from nst_jax.app import runner
from nst_jax.drive import driver
from nst_jax.optimize import converge
from tests.helpers import plans
from tests import test_reliability as reliability
from tests.test_reliability import _bytes, _config, cut_and_resumed

# The reliability tests' fixture: a small gradient pair.
good = reliability.good

LBFGS = {"optim.name": "lbfgs", "optim.learning_rate": 1.0,
         "optim.rtol_window": 4, "save_every": 0}


def test_the_rule_on_histories():
    flat = [(0, 100.0), (2, 50.0), (4, 49.9), (6, 49.85)]
    assert converge.stopped(flat, 0.01, 4)  # 50 -> 49.85 over 4 steps.
    assert not converge.stopped(flat, 0.001, 4)
    assert not converge.stopped(flat, 0.0, 4)  # Off.
    assert not converge.stopped(flat[:2], 0.01, 4)  # Window not reached.
    falling = [(0, 100.0), (2, 80.0), (4, 60.0), (6, 40.0)]
    assert not converge.stopped(falling, 0.1, 4)
    # The reference is the last point at or before k - window.
    assert converge.stopped([(0, 10.0), (3, 9.0), (6, 8.99)], 0.2, 4)
    rising = [(0, 10.0), (4, 11.0)]  # Not falling at all: stop.
    assert converge.stopped(rising, 0.01, 4)


def test_a_flattened_scale_stops_and_a_falling_one_does_not(
        tmp_path, good, params):
    c = _config(good, **{**LBFGS, "optim.steps": 40, "optim.rtol": 0.05})
    runner.execute(c, str(tmp_path / "stop"), vgg_params=params,
                   out=io.StringIO())
    lines = (tmp_path / "stop" / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(l) for l in lines]
    assert recs[-1]["converged"] and recs[-1]["step"] < 40
    assert not any(r.get("converged") for r in recs[:-1])
    man = json.loads((tmp_path / "stop" / "manifest.json").read_text())
    assert man["status"] == "done"
    assert man["scales"] == [{"scale": 0, "size": 32, "steps": recs[-1][
        "step"], "of": 40, "reason": "converged"}]
    # Still falling by more than 1e-4 per 4 steps: every step runs.
    c = _config(good, **{**LBFGS, "optim.steps": 40, "optim.rtol": 1e-4})
    runner.execute(c, str(tmp_path / "all"), vgg_params=params,
                   out=io.StringIO())
    recs = [json.loads(l) for l in (tmp_path / "all" / "metrics.jsonl")
            .read_text().splitlines()]
    assert recs[-1]["step"] == 40 and not any(r.get("converged")
                                              for r in recs)
    man = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert man["scales"][0]["reason"] == "steps"


@pytest.mark.parametrize("stop", [12, 14])
def test_resume_across_a_convergence_stop_is_byte_identical(
        tmp_path, good, params, monkeypatch, stop):
    """Scale 0 (24 px) converges at step 12 of 20; the run is cut right
    after that chunk's checkpoint, or later inside scale 1's budget."""
    c = _config(good, **{**LBFGS, "optim.rtol": 0.05, "checkpoint_every": 2,
                         "multiscale.sizes": (24, 32),
                         "multiscale.steps": (20, 20)})
    full = runner.execute(c, str(tmp_path / "full"), vgg_params=params,
                          out=io.StringIO())
    steps = [json.loads(l)["step"] for l in (tmp_path / "full" /
             "metrics.jsonl").read_text().splitlines()]
    assert 12 in steps and 14 not in steps and steps[-1] < 40, steps
    cut = 12 if stop == 12 else steps[steps.index(12) + 1]
    resumed = cut_and_resumed(c, tmp_path, params, monkeypatch, cut)
    assert _bytes(full) == _bytes(resumed)
    again = [json.loads(l)["step"] for l in (tmp_path / "resumed" /
             "metrics.jsonl").read_text().splitlines()]
    assert again == steps


@pytest.mark.parametrize("opt", ["lbfgs", "adam"])
def test_members_converging_apart_each_match_their_solo_run(good, params,
                                                            opt):
    over = {**LBFGS, "optim.steps": 30, "log_every": 2}
    if opt == "adam":
        over.update({"optim.name": "adam", "optim.learning_rate": 4.0})
    members = plans([_config(good, **{**over, "optim.rtol": r})
                     for r in (0.2, 0.05, 0.0)])
    res = driver.run_group(members, params)
    ends = [m[-1]["step"] for m in res.metrics]
    assert len(set(ends)) == 3 and ends[-1] == 30, ends
    for i, p in enumerate(members):
        alone, metrics = driver.stylize(p, params)
        assert [r["step"] for r in metrics] == [
            r["step"] for r in res.metrics[i]]
        rel = (np.linalg.norm(res.images[i] - alone)
               / np.linalg.norm(alone))
        assert rel <= 1e-4, (i, rel)
        assert res.stops[i][0]["reason"] == (
            "converged" if i < 2 else "steps")


@pytest.mark.parametrize("over,what", [
    ({"optim.rtol": -0.1}, "optim.rtol"), ({"optim.rtol": 1.0}, "optim.rtol"),
    ({"optim.rtol": 0.01, "optim.rtol_window": 0}, "optim.rtol_window")])
def test_bad_rule_settings_are_refused(good, over, what):
    from nst_jax import plan as plan_lib
    from nst_jax.errors import UserError
    with pytest.raises(UserError, match=what):
        plan_lib.fields(_config(good, **over))
