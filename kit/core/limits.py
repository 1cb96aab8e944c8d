"""Bounds on what a person or a config can ask for: thread counts, iterations, timeouts. Checked
where requests are built (CLI, profile plans, runner requests), with messages naming the option."""

from __future__ import annotations

from kit.core.errors import Sme2Error

MAX_THREADS = 1024
# A profile of more iterations than this is a typo, not a plan: it would run for days and then be
# stopped as hung. (Measurement statistics settle in tens of iterations.)
MAX_ITERATIONS = 100_000
# The defaults every front end uses (CLI, Dagster resource, MCP tools, profile plans): one place.
DEFAULT_ITERATIONS = 20  # measured iterations per run
DEFAULT_WARMUP = 3  # warmup iterations per run, excluded from statistics
RUN_TIMEOUT_S = 900.0  # one runner invocation longer than this counts as hung


def check_threads(value, where: str = "--threads") -> int:
    """A thread count: a whole number from 1 to MAX_THREADS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise Sme2Error(
            f"invalid thread count {value!r} ({where})",
            f"use a whole number from 1 to {MAX_THREADS} (0 does not mean 'all cores' here), e.g. --threads 1,4",
        )
    return value


def thread_list_problem(counts) -> str | None:
    """What is wrong with a list of thread counts (out of range, repeated), or None: the one rule
    behind the settings' and the experiment configs' validators."""
    bad = [t for t in counts if not 1 <= t <= MAX_THREADS]
    if bad:
        return f"must be whole numbers from 1 to {MAX_THREADS}, got {bad}"
    if len(set(counts)) != len(counts):
        return f"must not repeat, got {counts}"
    return None


def check_iterations(value, where: str = "--iterations", minimum: int = 1) -> int:
    """A count of iterations (measured: at least 1; warmup: at least 0; at most MAX_ITERATIONS)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_ITERATIONS:
        raise Sme2Error(f"invalid {where} {value!r}", f"use a whole number from {minimum} to {MAX_ITERATIONS:,}")
    return value


def check_timeout(value, where: str = "--timeout") -> float:
    """A timeout in seconds: a finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise Sme2Error(f"invalid timeout {value!r} ({where})", "use a number of seconds above 0, e.g. --timeout 900")
    return float(value)


def parse_threads(text: str, where: str = "--threads") -> list[int]:
    """'1,4' -> [1, 4], every entry checked."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise Sme2Error(
                f"invalid thread count {part!r} ({where})", f"use whole numbers from 1 to {MAX_THREADS}, e.g. 1,4"
            ) from None
        out.append(check_threads(n, where))
    problem = thread_list_problem(out)
    if problem:  # 1,1 would measure the same thing twice
        raise Sme2Error(f"thread counts {text!r} ({where}) {problem}", "give each thread count once, e.g. 1,4")
    return out
