"""The one scale loop: runs a group of members, coarse to fine.

A group is a list of plans that differ only in traced fields
(:data:`nst_jax.optimize.loop.TRACED_KEYS`); a single run is a group of one on
one device. Per scale: prepare the inputs, compute the targets once, start each
member from its init image (first scale), from its own previous output
upsampled (later scales) or from a checkpoint, then run chunks of ``log_every``
steps, checking every member's loss for NaN/inf after each. The driver writes
no files: a callback sees every chunk (run directories, progress, checkpoints),
and the result carries images and metrics.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from nst_jax import executables, memory, plan as plan_lib
from nst_jax.drive import (
    fast_group,
    grouping,
    inputs,
    sharding,
    targets as targets_lib)
from nst_jax.drive.report import (
    Checkpoint,
    ChunkInfo,
    GroupResult,
    fill_state,
    flatten_state)
from nst_jax.io import images
from nst_jax.optimize import converge, loop
from nst_jax.plan import Plan
from nst_jax.style import terms
from nst_jax.weights import fast as fast_weights, vgg as vgg_weights


def _stack(items: list, size: int):
    """Stacks pytrees on a new axis 0, padded by repeating the last one."""
    items = list(items) + [items[-1]] * (size - len(items))
    return jax.tree_util.tree_map(
        lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)


def _rgb(image_vgg: np.ndarray) -> np.ndarray:
    """(1, H, W, 3) VGG space -> (H, W, 3) RGB float32."""
    return np.asarray(images.from_vgg(image_vgg[0]), np.float32)


def run_group(plans: list, vgg_params, *, mesh: Optional[Mesh] = None,
              callback: Optional[Callable[[ChunkInfo], None]] = None,
              resume: Optional[list[Checkpoint]] = None,
              fast_params=None) -> GroupResult:
    """Runs members that differ only in traced fields as one program.

    method=fast members are painted in one pass (``nst_jax.drive.fast_group``)
    and need only ``fast_params``.

    Args:
      plans: member plans (:func:`nst_jax.plan.build`) with equal
        :func:`group_key`.
      vgg_params: VGG19 params (replicated over the mesh).
      mesh: devices to split the members over; default all devices, or
        this process's first device for a group of one.
      callback: called after every chunk, on every process.
      resume: one :class:`nst_jax.drive.report.Checkpoint` per member,
        all at the same scale and step, to continue from instead of
        starting afresh.
      fast_params: the fast-stylization network's params, for init=fast.

    Raises:
      UserError: a ``resume`` checkpoint whose state fields (names, shapes,
        dtypes) differ from the state this run lays out (one line naming
        the first such field).
    """
    c0, n = plans[0], len(plans)
    if len({grouping.group_key(c) for c in plans}) != 1:
        raise ValueError("run_group needs plans that differ only in "
                         f"traced fields {loop.TRACED_KEYS}")
    if c0.method == "fast":
        return fast_group.run_group(plans, fast_params, callback)
    if resume is not None and len({r.scale for r in resume}) != 1:
        raise ValueError("resumed members must be at the same scale")
    mesh = mesh or (sharding.single_device_mesh() if n == 1
                    else sharding.make_mesh())
    size_b = -(-n // mesh.size) * mesh.size
    mesh_key = tuple(mesh.shape.items())
    params = sharding.put(vgg_params, mesh, batched=False)
    scales = c0.scales
    total = sum(s for _, s in scales)
    first = resume[0].scale if resume else 0
    metrics = [list(r.metrics) for r in resume] if resume else [
        [] for _ in range(n)]
    errors = [r.error for r in resume] if resume else [""] * n
    last = [r.last_good for r in resume] if resume else [None] * n
    raw: list = [None] * n
    stops: list = [[] for _ in range(n)]
    done = sum(s for _, s in scales[:first])
    compile_s = callback_s = 0.0
    t_start = time.perf_counter()
    # Members painting different photos (a folder) have one input set
    # each and targets with a member axis; otherwise one set is shared.
    # So do members whose targets depend on their seed (sliced_w2's
    # directions).
    photos = plans if grouping.per_member_targets(plans) else [c0]
    # The last scale's inputs, prepared once: the portrait's searched
    # alignment is made there (once per run and photo) and that scale
    # reuses them.
    final_inps = [inputs.prepare(c, scales[-1][0]) for c in photos]
    last_spec = plan_lib.spec(c0)
    aligns = [targets_lib.portrait_alignment(c, vgg_params, inp, last_spec)
              for c, inp in zip(photos, final_inps)]
    for si, (size, steps) in enumerate(scales):
        if si < first or all(errors):
            continue
        inps = (final_inps if si == len(scales) - 1
                else [inputs.prepare(c, size) for c in photos])
        member_inp = [inps[i if len(inps) > 1 else 0] for i in range(n)]
        h, w = inps[0].content_rgb.shape[:2]
        static = plan_lib.static(c0, steps, si)._replace(
            batched_targets=len(photos) > 1)
        hps = [plan_lib.hparams(c, len(inps[0].style_rgbs), si)
               for c in plans]
        tgts = [targets_lib.compute(
            vgg_params, static.spec, inp.content_rgb, inp.style_rgbs,
            inp.masks, *targets_lib.portrait_targets(c, vgg_params, inp,
                                                     static.spec, align),
            seed=c.seed)
            for c, inp, align in zip(photos, inps, aligns)]
        tgt = (sharding.put(_stack(tgts, size_b), mesh, batched=True)
               if static.batched_targets else
               sharding.put(tgts[0], mesh, batched=False))
        hp_b = sharding.put(_stack(hps, size_b), mesh, batched=True)
        memory.release_freed()
        length = min(c0.log_every, steps)
        progs = loop.programs(static, length, mesh)
        keep = terms.serializable(static.spec.style_loss)
        n_active = sharding.put(np.int32(length), mesh, batched=False)
        if resume is not None and si == first:  # The checkpoints' state.
            image0 = np.zeros((size_b, 1, h, w, 3), np.float32)
            shapes = jax.eval_shape(progs.init, image0, hp_b, params, tgt)
            # One member's state as this run lays it out, filled by tree
            # path; a checkpoint of another layout is refused by name.
            member = jax.tree_util.tree_map(
                lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), shapes)
            state = sharding.put(_stack(
                [fill_state(member, r.state, r.source) for r in resume],
                size_b), mesh, batched=True)
            chunk, dt = executables.compiled(
                progs.chunk, ("chunk", static, length, mesh_key), state,
                params, tgt, hp_b, n_active, keep=keep)
            compile_s += dt
        else:
            # Traced and compiled (or looked up) from shapes while the
            # targets compute, before the init images: the device works
            # as Python traces.
            init, dt = executables.compiled(
                progs.init, ("init", static, length, mesh_key),
                sharding.abstract(
                (size_b, 1, h, w, 3), np.float32, mesh, batched=True),
                hp_b, params, tgt, keep=keep)
            chunk, dt2 = executables.compiled(
                progs.chunk, ("chunk", static, length, mesh_key),
                init.out_info, params, tgt, hp_b, n_active, keep=keep)
            compile_s += dt + dt2
            if raw[0] is None:  # First scale: each member's init image.
                image0 = targets_lib.start_images(plans, member_inp, hps,
                                                  fast_params)
            else:  # Coarse to fine: the raw optimised image, upsampled.
                image0 = [images.to_vgg(images.resize(r, (h, w)))[None]
                          for r in raw]
            state = init(sharding.put(_stack(image0, size_b), mesh,
                                      batched=True), hp_b, params, tgt)
        start = sharding.gather(progs.image(state, hp_b))[:n]
        for i in range(n):
            if not errors[i]:
                raw[i] = _rgb(start[i])
                last[i] = targets_lib.output_rgb(plans[i], member_inp[i],
                                                 raw[i])
        k = int(sharding.gather(state.step)[0])

        def converged(i: int) -> bool:
            o = plans[i].optim
            return converge.stopped(converge.history(metrics[i], si, done),
                                    o.rtol, o.rtol_window)
        # Members that converged at this scale before a resume stay put.
        still = [converged(i) for i in range(n)]
        sent = [False] * n  # The members hp_b marks as stopped.
        # What the targets, the init program and compiling freed goes back
        # to the system before the steps' peak (1024 px: -14% peak RSS).
        memory.release_freed()
        while k < steps and not all(e or s for e, s in zip(errors, still)):
            if still != sent:
                sent = list(still)
                hp_b = sharding.put(_stack(
                    [dict(hp, live=np.float32(not st))
                     for hp, st in zip(hps, still)], size_b), mesh,
                    batched=True)
            m = min(length, steps - k)
            state, losses_bt, aux_b, image_b = chunk(
                state, params, tgt, hp_b,
                sharding.put(np.int32(m), mesh, batched=False))
            losses_bt = sharding.gather(losses_bt)[:n, :m]
            aux_b = {key: sharding.gather(v)[:n] for key, v in aux_b.items()}
            image_b = sharding.gather(image_b)[:n]
            records = []
            for i in range(n):
                if still[i]:  # Converged earlier: its state did not move.
                    records.append(None)
                    continue
                rec = {key: float(v[i]) for key, v in aux_b.items()}
                if not errors[i] and not (np.all(np.isfinite(losses_bt[i]))
                                          and np.isfinite(rec["loss"])):
                    errors[i] = (
                        f"loss became NaN/inf between steps {done + k} and "
                        f"{done + k + m} (scale {si}, size {size}); lower "
                        "the learning rate or the loss weights")
                if errors[i]:
                    records.append(None)
                    continue
                # loss_start: the loss before this chunk's first step (at
                # step 0 of a run, the starting image's loss).
                rec.update(step=done + k + m, scale=si, size=size,
                           loss_start=float(losses_bt[i, 0]),
                           loss_min=float(losses_bt[i].min()))
                metrics[i].append(rec)
                records.append(rec)
                if converged(i):
                    rec["converged"] = still[i] = True
                raw[i] = _rgb(image_b[i])
                last[i] = targets_lib.output_rgb(plans[i], member_inp[i],
                                                 raw[i])
            k += m
            if callback is not None:
                t = time.perf_counter()
                leaves = functools.cache(
                    functools.partial(_member_leaves, state, n))
                callback(ChunkInfo(si, k, steps, done + k, total, records,
                                   list(last), list(raw), list(errors),
                                   leaves))
                callback_s += time.perf_counter() - t
        for i in range(n):
            if not errors[i]:
                stops[i].append(converge.stop_record(
                    metrics[i], si, size, done, steps))
        done += steps
    run_s = time.perf_counter() - t_start - compile_s - callback_s
    status = ["diverged" if e else "done" for e in errors]
    return GroupResult(last, metrics, status, errors, compile_s, run_s,
                       stops)


def _member_leaves(state, n: int) -> list:
    """[member]{tree path: host array} of a batched state (what a
    checkpoint stores, :func:`nst_jax.drive.report.flatten_state`)."""
    flat = {k: sharding.gather(x) for k, x in flatten_state(state).items()}
    return [{k: leaf[i] for k, leaf in flat.items()} for i in range(n)]


def stylize(plan: Plan, vgg_params=None, fast_params=None
            ) -> tuple[np.ndarray, list[dict]]:
    """One run in memory (no files): the final RGB image and its metrics.

    Args:
      plan: a built plan (:func:`nst_jax.plan.build`).
      vgg_params: VGG19 params; loaded from ``plan.model.weights`` if
        None and the method optimises.
      fast_params: the fast network's; loaded from ``plan.fast.weights``
        if None and method=fast or init=fast.

    Raises:
      UserError: a bad input.
      FloatingPointError: the loss went NaN/inf (the message says when).
    """
    inputs.check(plan)
    if vgg_params is None and plan.method == "gatys":
        vgg_params = vgg_weights.load_vgg19_params(
            plan.model.weights or None)
    if fast_params is None and "fast" in (plan.method, plan.init):
        fast_params = fast_weights.load_params(plan.fast.weights or None)
    res = run_group([plan], vgg_params, fast_params=fast_params)
    if res.errors[0]:
        raise FloatingPointError(res.errors[0])
    return res.images[0], res.metrics[0]
