"""Shared test helpers: small configs that are easy to break on purpose,
and signals sent to a running script."""

import subprocess
import time

from nst_jax import config as cfg


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


def interrupt_when(cmd: list, marker: str, sig: int, cwd: str,
                   wait_s: float = 240) -> tuple[int, str]:
    """Starts ``cmd``, sends ``sig`` once a stderr line holds ``marker``
    (or after ``wait_s``), and returns (exit status, the rest of stderr)."""
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          cwd=cwd) as proc:
        try:
            deadline = time.time() + wait_s
            for line in proc.stderr:
                if marker in line or time.time() > deadline:
                    break
            proc.send_signal(sig)
            rest = proc.stderr.read()
            proc.wait(timeout=120)
        finally:
            proc.kill()
    return proc.returncode, rest
