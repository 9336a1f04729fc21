"""The convergence rule: stop a scale once the loss stopped falling.

A scale stops when the total loss fell by less than ``rtol`` (relative)
over the last ``window`` steps. It is checked at chunk ends from the loss
records already on the host (no extra device sync) and depends on nothing
but those records, so a resumed run, which carries its records in its
checkpoint, stops where the uninterrupted one did, and a sweep member
stops where its solo run does.
"""

from __future__ import annotations


def history(records: list, scale: int, done: int) -> list[tuple[int, float]]:
    """[(steps into the scale, total loss)] of one member at ``scale``:
    the starting image's loss (step 0) and the loss after every chunk.

    ``records``: the member's metric records (``step`` counted over all
    scales, ``scale``, ``loss``, ``loss_start``); ``done``: the steps of
    the scales before this one.
    """
    mine = [r for r in records if r.get("scale") == scale]
    if not mine:
        return []
    return [(0, mine[0]["loss_start"])] + [(r["step"] - done, r["loss"])
                                            for r in mine]


def stopped(hist: list[tuple[int, float]], rtol: float, window: int) -> bool:
    """Whether the loss fell by less than ``rtol`` of its value ``window``
    steps ago (the last point at or before that step); False while fewer
    than ``window`` steps were taken or the rule is off (``rtol`` 0)."""
    if rtol <= 0 or len(hist) < 2:
        return False
    k, now = hist[-1]
    if k < window:
        return False
    then = [loss for step, loss in hist if step <= k - window][-1]
    return then - now <= rtol * abs(then)


def stop_record(records: list, scale: int, size: int, done: int,
                steps: int) -> dict:
    """Where a member's scale ended and why, for the manifest:
    {"scale", "size", "steps" (taken), "of" (the budget), "reason"
    ("converged" or "steps")}."""
    mine = [r for r in records if r.get("scale") == scale]
    taken = mine[-1]["step"] - done if mine else 0
    reason = "converged" if mine and mine[-1].get("converged") else "steps"
    return {"scale": scale, "size": size, "steps": taken, "of": steps,
            "reason": reason}
