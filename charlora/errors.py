"""Errors the user can act on."""


class PipelineError(Exception):
    """A problem the user can fix.

    The message says what happened, to which file or param, and what to do next; stages print
    it without a traceback and exit non-zero.
    """
