"""Errors that mean "the user asked for something we cannot do".

Scripts print these as one line and exit with status 2; anything else is a
bug and keeps its traceback.
"""


def one_line(e: BaseException) -> str:
    """An exception's message folded onto one line (its type if empty)."""
    return " ".join(str(e).split()) or type(e).__name__


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do instead."""


class WeightsError(UserError):
    """Pretrained weights are missing, corrupt or do not match VGG19."""
