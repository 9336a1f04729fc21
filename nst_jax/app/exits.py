"""The scripts' exit statuses, in one place: 0 done, 2 bad input (one
``error:`` line), 3 a run diverged, 130 interrupted (what was done is
kept)."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TextIO

from nst_jax.errors import UserError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class Diverged(RuntimeError):
    """A run's loss went NaN/inf (its last good image is saved)."""


def call(work: Callable[[], Any], *, interrupted: str,
         diverged: str = "", done: Callable[[Any], None] = print,
         err: Optional[TextIO] = None) -> int:
    """Runs ``work`` and turns how it ended into an exit status.

    Args:
      work: the script's job.
      interrupted: the line printed on Ctrl-C / SIGTERM (what was kept).
      diverged: appended to the error line when a run diverged.
      done: called with ``work``'s result on success (prints it).
      err: where the error and interrupt lines go (default: the
        current sys.stderr).
    """
    err = err or sys.stderr
    try:
        result = work()
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=err)
        return EXIT_USER_ERROR
    except Diverged as e:
        print(f"error: {e}{diverged}", file=err)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(interrupted, file=err)
        return EXIT_INTERRUPTED
    done(result)
    return 0
