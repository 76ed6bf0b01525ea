"""The README's Quickstart sample output, written from a real ``make run``.

``python docs/quickstart_sample.py`` (``make readme-sample``) runs the Makefile's ``run:``
command (its flags read from the Makefile, so they cannot drift) in a temporary directory and
writes the lines it prints (the ``Experiment:`` line, rounds 0 and 1, ``...``, the last round)
into README.md between the quickstart-output markers. ``--check`` compares instead of writing,
and ``--check --rounds=1`` (tests/test_readme.py) runs rounds 0-1 only: it compares the README's
lines for those rounds and the format of the rest.

What another machine may print differently (the rules :func:`disagreements` applies):

- the seconds: never compared, only their format;
- the test accuracies (final and at early stop): within :data:`TOLERANCE` points. Another CPU
  (another instruction set, another kernel) rounds the last bits differently and 1000
  iterations of Adam grow that. Measured on one machine, the full run with oneDNN limited to
  AVX-512, AVX2 or SSE4.1, or without oneDNN: its 88 accuracies moved by at most 0.53 points.
  Another ``--seed`` moves them by up to 2.4 points (6 seeds, std up to 0.84): 1.5 is about
  three times the floats' effect and still catches a README that a change to training has
  left behind;
- the early-stop iteration: the lowest of 10 validation losses, where near ties flip with
  rounding (it moved in 5 of those 44 rounds). It must be the README's when the line's
  accuracies are the README's to the digit (the same floats), otherwise any multiple of the
  evaluation spacing within the round;
- everything else is exact: the round, the percent of weights remaining (from mask sizes:
  integer counts), the ``Experiment:`` line and the format of every line.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
SCRIPT = "docs/quickstart_sample.py"
BEGIN = f"<!-- quickstart-output: written by {SCRIPT} (make readme-sample) -->"
END = "<!-- /quickstart-output -->"
# Percentage points an accuracy may differ by on another machine (see the module's docstring).
TOLERANCE = 1.5
# The validation loss is evaluated every 100 iterations (the LTH paper's spacing, the README
# says so): an early-stop iteration is a multiple of it.
EVAL_SPACING = 100
NUMBER = re.compile(r"\d+(?:\.\d+)?")
ROUND = re.compile(r"round +(\d+) \|")
# The numbers of a round line, in order: what each is, and how it is compared.
ROUND_FIELDS = ("round", "remaining", "test", "stop", "stop_test", "seconds")
EXACT, ACCURACY = ("round", "remaining"), ("test", "stop_test")
SAYS = {"round": "round", "remaining": "weights remaining", "test": "test accuracy"}
SAYS["stop_test"] = "early-stop test accuracy"


class UserError(Exception):
    """What the person running the script can fix: one line, exit status 2."""


def make_run_arguments(makefile: Path = MAKEFILE) -> list[str]:
    """The arguments after ``python`` in the Makefile's ``run:`` recipe.

    ``run: setup`` followed by one command that may continue over several lines with ``\\``:
    ``$(BIN)/python -m pipelines.imp --model=... --rounds=10 ...``.
    """
    lines = makefile.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"run\s*:(?!=)", line)), None)
    if start is None:
        raise UserError(f"{makefile} has no run: target")
    command = ""
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command += " " + line.strip().removesuffix("\\")
        if not line.rstrip().endswith("\\"):
            break
    try:
        words = shlex.split(command)
    except ValueError as error:
        raise UserError(f"{makefile}'s run: command does not parse ({error})") from None
    if len(words) < 3 or not words[0].endswith("python") or words[1:3] != ["-m", "pipelines.imp"]:
        raise UserError(f"{makefile}'s run: target is not one python -m pipelines.imp command")
    return words[1:]


def flag_value(arguments: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in arguments if a.startswith(f"--{name}=")]
    if len(values) != 1:
        raise UserError(f"the Makefile's run: command must give --{name}=VALUE once")
    return values[0]


def count_flag(arguments: list[str], name: str) -> int:
    """``--NAME=N`` of the Makefile's run command as a plain count (``--iterations=1000``: the
    sample's early-stop rule reads iterations, so ``1000it`` or ``2ep`` are not taken here)."""
    value = flag_value(arguments, name)
    if not value.isdigit() or int(value) < 1:
        raise UserError(
            f"the Makefile's run: command must give --{name} as a plain positive number, "
            f"not {value!r}"
        )
    return int(value)


def with_rounds(arguments: list[str], rounds: int) -> list[str]:
    return [f"--rounds={rounds}" if a.startswith("--rounds=") else a for a in arguments]


def run(arguments: list[str]) -> list[str]:
    """What the command prints on stdout, run by this Python from a temporary directory (as
    ``make run`` runs from the repository root: ``--output_dir=runs`` is relative to it)."""
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *([path] if path else [])]))
    with tempfile.TemporaryDirectory(prefix="quickstart-") as directory:
        result = subprocess.run(
            [sys.executable, *arguments], cwd=directory, env=env, capture_output=True, text=True
        )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise RuntimeError(f"the run failed (exit status {result.returncode}): {last}")
    return result.stdout.splitlines()


def sample(printed: list[str], last_round: int) -> list[str]:
    """The lines the README shows: ``Experiment:``, rounds 0 and 1, ``...``, the last round
    (those of them the run printed)."""
    rounds = {int(m.group(1)): line for line in printed if (m := ROUND.match(line))}
    shown = [line for line in printed if line.startswith("Experiment: ")][:1]
    shown += [rounds[r] for r in (0, 1) if r in rounds]
    if last_round > 2:
        shown.append("...")
    if last_round > 1 and last_round in rounds:
        shown.append(rounds[last_round])
    return shown


def shape(line: str) -> str:
    """The line's format: its numbers as ``9``, ``9.99`` (the digits after the point kept),
    runs of spaces (the columns' padding) as one."""
    decimals = re.sub(
        r"\d+(?:\.(\d+))?", lambda m: "9" + ("." + "9" * len(m[1]) if m[1] else ""), line
    )
    return re.sub(r" +", " ", decimals)


def key(line: str) -> str:
    """What a sample line stands for: ``Experiment``, ``round 3`` or the line itself."""
    if line.startswith("Experiment: "):
        return "Experiment"
    match = ROUND.match(line)
    return f"round {int(match.group(1))}" if match else line


def sample_keys(last_round: int) -> list[str]:
    """What the sample of a run of ``last_round`` rounds shows, line by line."""
    every_line = ["Experiment: "] + [f"round {r} |" for r in range(last_round + 1)]
    return [key(line) for line in sample(every_line, last_round)]


def disagreements(readme: list[str], printed: list[str], last_round: int, iterations: int):
    """How the README's sample lines differ from a run's (``printed``, maybe of fewer rounds
    than the Makefile's ``last_round``) beyond what another machine may print (the module's
    docstring): ``(problems, inexact)``, the second naming the lines that agree within
    tolerance but not to the digit."""
    expected = sample_keys(last_round)
    if [key(line) for line in readme] != expected:
        return [f"the sample shows {[key(x) for x in readme]}, not {expected}"], []
    run_lines = {key(line): line for line in printed}
    ran_example = next((x for x in printed if ROUND.match(x)), "")
    round_shape = shape(ran_example)
    problems, inexact = [], []
    for line in readme:
        name = key(line)
        if name == "...":
            continue
        if name not in run_lines:  # a round this run did not reach: its format only
            if shape(line) != round_shape:
                problems.append(f"{name}: {line!r} is not in the format of {ran_example!r}")
            continue
        ran = run_lines[name]
        if shape(line) != shape(ran):
            problems.append(f"{name}: the README shows {line!r}, the run prints {ran!r}")
        elif name == "Experiment":
            if line != ran:
                problems.append(f"the README shows {line!r}, the run prints {ran!r}")
        else:
            problem = round_disagreement(line, ran, iterations)
            if problem:
                problems.append(f"{name}: {problem}")
            elif line.rsplit("|", 1)[0] != ran.rsplit("|", 1)[0]:
                inexact.append(name)
    return problems, inexact


def round_disagreement(line: str, ran: str, iterations: int) -> str | None:
    shown = dict(zip(ROUND_FIELDS, NUMBER.findall(line), strict=True))
    printed = dict(zip(ROUND_FIELDS, NUMBER.findall(ran), strict=True))
    values = iter(printed.values())
    if NUMBER.sub(lambda _: next(values), line) != ran:  # the text and padding between them
        return f"the README shows {line!r}, the run prints {ran!r}"
    for field in EXACT:
        if shown[field] != printed[field]:
            return f"{SAYS[field]} {shown[field]} in the README, {printed[field]} in the run"
    for field in ACCURACY:
        if abs(float(shown[field]) - float(printed[field])) > TOLERANCE:
            return (
                f"{SAYS[field]} {shown[field]}% in the README, {printed[field]}% in the run "
                f"(more than {TOLERANCE} points apart)"
            )
    stop = int(shown["stop"])
    if stop % EVAL_SPACING or not 0 < stop <= iterations:
        return f"early stop at {stop}: not a multiple of {EVAL_SPACING} within {iterations}"
    same_floats = all(shown[field] == printed[field] for field in ACCURACY)
    if same_floats and shown["stop"] != printed["stop"]:
        return (
            f"early stop at {stop} in the README, at {printed['stop']} in the run, whose "
            "accuracies are the README's to the digit"
        )
    return None


def readme_sample(text: str) -> tuple[int, int, list[str]]:
    """Where the block between the markers starts and ends in ``text``, and its lines."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise UserError(f"README.md must have the lines {BEGIN} and {END} once each")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    match = re.fullmatch(r"\n```\n(.*?)```\n", text[start:end], re.S)
    if not match:
        raise UserError("README.md: the quickstart-output markers must hold one ``` block")
    return start, end, match.group(1).splitlines()


def parse_arguments(argv: list[str], last_round: int) -> argparse.Namespace:
    parser = OneLineParser(
        prog=SCRIPT,
        description=(
            "Run the Makefile's run: command and write what it prints into README.md's "
            "Quickstart sample, or compare them (--check)."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"compare the README's sample with the run's (accuracies within {TOLERANCE} "
        "points, seconds by format) and exit 1 if they disagree; README.md is left as it is",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=last_round,
        help=f"with --check: run rounds 0 to ROUNDS only, 1 to {last_round} (default "
        f"{last_round}, the Makefile's); later rounds' lines are checked by format",
    )
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.rounds <= last_round:
        parser.error(f"--rounds must be 1 to {last_round} (the Makefile's), got {arguments.rounds}")
    if arguments.rounds < last_round and not arguments.check:
        parser.error("--rounds is for --check: the README shows all the Makefile's rounds")
    return arguments


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> int:
    arguments = make_run_arguments()
    last_round = count_flag(arguments, "rounds")
    iterations = count_flag(arguments, "iterations")
    options = parse_arguments(argv, last_round)
    text = README.read_text()
    start, end, shown = readme_sample(text)
    print(f"Running python {shlex.join(with_rounds(arguments, options.rounds))} ...", flush=True)
    printed = sample(run(with_rounds(arguments, options.rounds)), options.rounds)
    if [key(line) for line in printed] != sample_keys(options.rounds):
        raise RuntimeError(
            f"the run printed {[key(line) for line in printed]} of the lines the sample shows, "
            f"not {sample_keys(options.rounds)}"
        )
    if not options.check:
        README.write_text(text[:start] + "\n```\n" + "\n".join(printed) + "\n```\n" + text[end:])
        print("\n".join(printed))
        print(f"README.md: the Quickstart sample is this run's ({len(printed)} lines)")
        return 0
    problems, inexact = disagreements(shown, printed, last_round, iterations)
    if problems:
        print("README.md's Quickstart sample disagrees with the run:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"(rewrite it with: python {SCRIPT})", file=sys.stderr)
        return 1
    compared = f"rounds 0-{options.rounds}" + (
        f" compared, round {last_round} by format" if options.rounds < last_round else ""
    )
    print(f"README.md's Quickstart sample agrees with the run ({compared})")
    if inexact:
        print(
            f"  within {TOLERANCE} points, not to the digit: {', '.join(inexact)} (another "
            f"CPU's floats; on the README's machine this means a change: python {SCRIPT})"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except (RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
