"""Errors raised by tunelib, named as Ray names them."""


class TuneError(Exception):
    """A problem with an experiment: bad arguments, or trials that failed."""


class TrialFailedError(TuneError):
    """Raised in place of a trial's own exception when that exception cannot be unpickled."""
