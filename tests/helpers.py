"""Shared test helpers: small configs that are easy to break on purpose,
and signals sent to a running script."""

import subprocess
import sys
import threading
import time

from nst_jax import config as cfg, plan as plan_lib


def plans(configs) -> list:
    """Each config's built plan (what the driver takes)."""
    return [plan_lib.build(c) for c in configs]


def count_chunk_traces(monkeypatch) -> list:
    """Records every trace of the step chunk from now on (the list it
    returns fills with each trace's Static), with fresh program caches."""
    from nst_jax import executables
    from nst_jax.optimize import loop
    traces: list = []
    real = loop.run_chunk

    def counting(*args):
        traces.append(args[0])
        return real(*args)
    monkeypatch.setattr(loop, "run_chunk", counting)
    loop.programs.cache_clear()
    executables.forget()
    return traces


def small_config(content_path: str, style_path: str, **overrides):
    """32 px, 4 Adam steps on two shallow layers; dotted-key overrides.

    Not validated, so a test can pass deliberately bad values.
    """
    c = cfg.base()
    c.content, c.style = content_path, (style_path,)
    c.size = 32
    c.loss.content_layers = ("relu2_1",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    c.optim.name = "adam"
    c.optim.learning_rate = 4.0
    c.optim.steps = 4
    c.log_every = 2
    return cfg.override(c, overrides)


# Runs argv[1:] with SIGINT back at its default disposition. A shell that
# starts a job in the background (``nohup``, ``&`` without job control)
# makes it ignore SIGINT, its children inherit that, and a Python that
# starts with SIGINT ignored never turns it into KeyboardInterrupt: the
# script would never see the test's Ctrl-C. Popen's restore_signals covers
# only SIGPIPE and SIGXFSZ, and a preexec_fn is not safe in a parent with
# threads (JAX's), so a fresh interpreter resets it and execs the command
# (same pid, so signals sent to the Popen reach the command itself).
_SIGINT_DEFAULT = [
    sys.executable, "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"]


def interrupt_when(cmd: list, marker: str, sig: int, cwd: str,
                   wait_s: float = 240, exit_s: float = 120
                   ) -> tuple[int, str]:
    """Starts ``cmd`` (SIGINT at its default, whatever this process
    ignores), sends ``sig`` once a stderr line holds ``marker`` and returns
    (exit status, the rest of stderr).

    Every wait is bounded: fails (AssertionError, with the stderr so far)
    when the marker has not appeared within ``wait_s`` or the command ended
    before it, or when the command has not exited ``exit_s`` after the
    signal; the command is killed in every case.
    """
    lines: list[str] = []
    seen, ended = threading.Event(), threading.Event()
    with subprocess.Popen(_SIGINT_DEFAULT + list(cmd),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, errors="replace", cwd=cwd) as proc:

        def read():  # Never blocks the test: a thread of its own.
            try:
                for line in proc.stderr:
                    lines.append(line)
                    if marker in line:
                        seen.set()
            except (OSError, ValueError):  # Pipe closed under us.
                pass
            finally:
                ended.set()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + wait_s
            while not (seen.is_set() or ended.is_set()):
                if time.monotonic() > deadline:
                    break
                seen.wait(0.2)
            if not seen.is_set():
                raise AssertionError(
                    f"{marker!r} not in the command's stderr "
                    + ("before it ended" if ended.is_set()
                       else f"within {wait_s:.0f} s") + ":\n"
                    + "".join(lines)[-2000:])
            at = 1 + next(i for i, line in enumerate(lines)
                          if marker in line)
            proc.send_signal(sig)
            try:
                proc.wait(timeout=exit_s)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"still running {exit_s:.0f} s after signal {sig}:\n"
                    + "".join(lines[at:])[-2000:]) from None
            # The pipe ends with the command (nothing else holds it).
            reader.join(timeout=30)
        finally:
            proc.kill()
            reader.join(timeout=30)
    return proc.returncode, "".join(lines[at:])
