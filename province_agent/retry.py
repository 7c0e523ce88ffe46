"""Retrying transient failures with exponential backoff and full jitter."""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from ._exceptions import TransportError
from .config import RetryPolicy

T = TypeVar("T")
log = logging.getLogger(__name__)


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: base x 2^attempt, capped, with jitter."""
    cap = min(policy.max_seconds, policy.base_seconds * (2 ** attempt))
    # Jitter spreads 31 provinces' retries so they do not hit HQ in lockstep after an outage.
    return (rng or random).uniform(cap / 2, cap)


def with_retries(what: str, fn: Callable[[], T], policy: RetryPolicy, transient: tuple[type[BaseException], ...],
                 on_failure: Callable[[int, BaseException], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn``; on a transient error wait and try again, up to ``policy.attempts`` times."""
    for attempt in range(policy.attempts):
        try:
            return fn()
        except transient as exc:
            if on_failure is not None:
                on_failure(attempt, exc)
            if attempt + 1 >= policy.attempts:
                raise TransportError(f"{what} failed after {policy.attempts} attempt(s): {exc}") from exc
            wait = backoff(attempt, policy)
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, wait)
            sleep(wait)
    raise AssertionError("unreachable")
