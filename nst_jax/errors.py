"""Errors that mean "the user asked for something we cannot do".

Scripts print these as one line and exit with status 2; anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do instead."""


class WeightsError(UserError):
    """Pretrained weights are missing, corrupt or do not match VGG19."""
