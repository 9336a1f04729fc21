"""Which members share one compiled program.

Members whose plans differ only in traced fields
(:data:`nst_jax.optimize.loop.TRACED_KEYS`) form a group: one program,
vmapped or mapped over the member axis. Photos of one size share a group
too (their targets then carry the member axis).
"""

from __future__ import annotations

import json

from nst_jax.optimize import loop
from nst_jax.plan import Plan, types
from nst_jax.style import terms


def group_key(plan: Plan, with_content: bool = False) -> str:
    """The plan without its traced fields: equal keys, one program.

    Different photos share a group too, unless ``with_content``: the fast
    method batches photos of any size; the optimisation batches photos
    that load to the same size at every scale (their targets then carry
    the member axis).
    """
    flat = types.flat(plan)
    skip = set(loop.TRACED_KEYS)
    if not with_content:
        skip.add("content")
        if plan.method == "fast":
            skip.add("content_hw")
    return json.dumps({k: v for k, v in flat.items() if k not in skip},
                      sort_keys=True)


def group(plans: list) -> list[list[int]]:
    """Member indices per group, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(plans):
        groups.setdefault(group_key(p), []).append(i)
    return list(groups.values())


def per_photo(plans: list) -> bool:
    """Whether a group's members paint different photos."""
    return len({p.content for p in plans}) > 1


def per_member_targets(plans: list) -> bool:
    """Whether a group's members need targets of their own: different
    photos, or a seeded style statistic (sliced_w2's directions) and
    different seeds."""
    return per_photo(plans) or (
        plans[0].loss.style_loss in terms.SEEDED
        and len({p.seed for p in plans}) > 1)
