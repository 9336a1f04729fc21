"""Everything a run checks before it writes anything.

Each member's plan is built (its fields and input paths checked), the
plans are grouped, and then, in this order: workdirs, resume checkpoints,
memory, every input decoded once, and the weights each group needs
(loaded once per source). A failure is one ``UserError`` line; the runner
agrees on it across processes before any directory exists.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from nst_jax import memory, plan as plan_lib
from nst_jax.app import checkpoint, rundir
from nst_jax.drive import grouping, inputs, sharding
from nst_jax.errors import UserError
from nst_jax.faces import weights as face_weights
from nst_jax.io import hashing
from nst_jax.plan import Plan
from nst_jax.weights import fast as fast_weights, vgg as vgg_weights


def weights(plan: Plan, vgg_params, cache: dict) -> dict:
    """What a group's runs need, loaded once per source: {"vgg": (params,
    sha256)} for method=gatys (the caller's params win), {"fast": ...} for
    method=fast and init=fast."""
    need = {}
    if plan.method == "gatys":
        source = plan.model.weights
        key = ("vgg", None if vgg_params is not None else source)
        if key not in cache:
            cache[key] = ((vgg_params, hashing.params_sha256(vgg_params))
                          if key[1] is None else
                          (vgg_weights.load_vgg19_params(source or None),
                           vgg_weights.weights_sha256(source or None)))
        need["vgg"] = cache[key]
    if plan.method == "fast" or plan.init == "fast":
        source = plan.fast.weights
        key = ("fast", source)
        if key not in cache:
            cache[key] = (fast_weights.load_params(source or None),
                          fast_weights.weights_sha256(source or None))
        need["fast"] = cache[key]
    if inputs.detects_faces(plan):
        key = ("faces", plan.portrait.face_weights)
        if key not in cache:
            cache[key] = (face_weights.load(plan.portrait.face_weights),
                          None)
        need["faces"] = cache[key]
    return need


def face_lines(plan: Plan) -> tuple[dict, list]:
    """The manifest record and console lines of align=auto's search."""
    found = inputs.face_search(plan)
    paths = {"content": plan.content, "style": plan.style[0]}
    lines = [f"portrait: {role} {paths[role]}: {s.describe()}"
             for role, s in found.items()]
    missing = [paths[r] for r, s in found.items() if s.face is None]
    if missing:
        used = "features"
        lines.append(f"portrait: no face found in {' or '.join(missing)}; "
                     "aligning by features (PatchMatch) instead of "
                     "landmarks")
    else:
        used = "landmarks"
    record = {role: dict(s.record(), path=os.path.abspath(paths[role]))
              for role, s in found.items()}
    return dict(record, alignment=used), lines


def check_members(members: list, vgg_params, params: dict,
                 checks: Optional[Callable[[], None]]
                 ) -> tuple[list, list, list]:
    """Every check of this process: (the members' plans, their groups,
    their checkpoints or None). Each member's config and input paths are
    checked (its plan built) before anything else reads an input."""
    writes = sharding.writes_files()
    if checks is not None:
        checks()
    plans = []
    for m in members:
        try:
            plans.append(plan_lib.build(m.config))
        except UserError as e:
            raise UserError(e if len(members) == 1 else
                            f"{m.workdir}: {e}") from None
        if writes:
            rundir.check_workdir(m.workdir)
    groups = grouping.group(plans)
    checkpoints = [
        checkpoint.check_resume(p, m.resume_dir)
        if m.resume_dir and not (m.resume_if_there and not os.path.isfile(
            os.path.join(m.resume_dir, checkpoint.CHECKPOINT)))
        else None for p, m in zip(plans, members)]
    for idx in groups:  # Before inputs.check decodes anything.
        memory.check(plans[idx[0]], len(idx))
    for key in {grouping.group_key(p, with_content=True): p
                for p in plans}.values():  # Each set of inputs once.
        inputs.check(key)
    for idx in groups:
        marks = {None if checkpoints[i] is None else checkpoints[i].step
                 for i in idx}
        if len(marks) > 1:
            raise UserError(
                "members of one group stopped at different points ("
                f"{', '.join(members[i].workdir for i in idx)}); resume "
                "needs every member of a group at the same checkpoint")
        weights(plans[idx[0]], vgg_params, params)
    return plans, groups, checkpoints
