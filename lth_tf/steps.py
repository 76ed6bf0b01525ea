"""One parser for training lengths: ``500it``, ``2ep``, ``1ep50it`` or a bare iteration count.

Every flag that names a point in training (``--iterations``, ``--rewind``, ``--eval_every``) goes
through :func:`parse_step`, so the conversion between epochs and iterations lives in one place.
"""

from __future__ import annotations

import dataclasses
import math
import re

from lth_tf.errors import LthError

# [0-9], not \d: \d also matches other scripts' digits ("٣ep"), which no flag means.
_STEP_RE = re.compile(r"(?:(?P<ep>[0-9]+)ep)?(?:(?P<it>[0-9]+)it)?")


# The largest count a flag takes: NumPy and TensorFlow hold counts in 64 bits.
MAX_COUNT = 2**63 - 1


def is_count(text: str) -> bool:
    """Whether ``text`` is a non-negative integer in ASCII digits, the only ones a flag takes.

    ``str.isdigit`` alone also accepts "²" (which ``int`` refuses) and other scripts' digits.

    >>> is_count("500"), is_count("²"), is_count("٣"), is_count("")
    (True, False, False, False)
    """
    return text.isascii() and text.isdigit()


def decimal(text: str) -> float:
    """``float(text)`` for a number written in ASCII without "_": Python's ``float`` also reads
    "0.2_0" and other scripts' digits ("٠.٢"), which no flag means. ValueError otherwise.

    >>> decimal("0.2"), decimal("1e-4")
    (0.2, 0.0001)
    """
    if not text.isascii() or "_" in text:
        raise ValueError(f"{text!r} is not a number in ASCII digits")
    return float(text)


@dataclasses.dataclass(frozen=True)
class Step:
    """A point in training, as epochs plus iterations.

    >>> Step.parse("1ep50it").to_iterations(iterations_per_epoch=917)
    967
    >>> str(Step.parse("500"))
    '500it'
    """

    epochs: int = 0
    iterations: int = 0

    @classmethod
    def parse(cls, text: str | int, what: str = "step") -> Step:
        """Parses ``500it``, ``2ep``, ``1ep50it`` or a bare integer (iterations)."""
        given = str(text).strip()
        text = given.lower()
        if is_count(text):
            step = cls(iterations=int(text))
        else:
            match = _STEP_RE.fullmatch(text)
            if not text or match is None:
                raise LthError(
                    f"{what}: {given!r} is not a step; use an iteration count or a string "
                    "like 0, 500it, 2ep or 1ep50it"
                )
            step = cls(epochs=int(match["ep"] or 0), iterations=int(match["it"] or 0))
        if max(step.epochs, step.iterations) > MAX_COUNT:
            raise LthError(f"{what}: {text[:20]}... is too large a step")
        return step

    def to_iterations(self, iterations_per_epoch: int) -> int:
        """The iteration this step falls on, for a given epoch length."""
        return self.epochs * iterations_per_epoch + self.iterations

    def __str__(self) -> str:
        if self.epochs and self.iterations:
            return f"{self.epochs}ep{self.iterations}it"
        if self.epochs:
            return f"{self.epochs}ep"
        return f"{self.iterations}it"


def parse_step(text: str | int, iterations_per_epoch: int, what: str = "step") -> int:
    """Parses a step string straight to an iteration count.

    >>> parse_step("2ep", iterations_per_epoch=917)
    1834
    """
    return Step.parse(text, what).to_iterations(iterations_per_epoch)


def iterations_per_epoch(num_examples: int, batch_size: int) -> int:
    """Iterations in one pass over ``num_examples``; a partial last batch counts as one.

    >>> iterations_per_epoch(55_000, 60)
    917
    """
    return math.ceil(num_examples / batch_size)
