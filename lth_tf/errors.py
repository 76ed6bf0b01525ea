"""The one exception type that reaches users as a single line instead of a traceback."""


class LthError(Exception):
    """A problem with the user's input (a flag, a file, a directory) that they can fix.

    Pipelines print ``str(error)`` on one line and exit non-zero; the message should say
    what was wrong and what to do.

    >>> raise LthError("--rewind: 'soon' is not a step; use e.g. 0, 500it or 2ep")
    Traceback (most recent call last):
    ...
    lth_tf.errors.LthError: --rewind: 'soon' is not a step; use e.g. 0, 500it or 2ep
    """
