"""The wrapper TRL sees for each configured reward: its config name, its error policy, its checks.

TRL names a reward's metrics after ``__name__`` (``rewards/<name>/mean``) and awaits any callable
whose ``__call__`` is a coroutine function, gathering several such rewards concurrently. So a
reward configured as ``reward.mine`` becomes ``NamedReward("mine", fn)``, or
``AsyncNamedReward("mine", fn)`` when ``fn`` is ``async def``; both are picklable when ``fn`` is
(module-level functions, partials of them, instances of module-level classes).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import numbers
import threading
from collections.abc import Callable
from typing import Any

from grpolab import redaction
from grpolab.errors import UserError

ON_ERROR = ("raise", "none")
_RUNNING: list[str] = []  # the rewards being called right now, innermost last (see `running`)


def running() -> str | None:
    """The name of the reward whose function is running now in this process, if any (for signal handlers)."""
    return _RUNNING[-1] if _RUNNING else None


class RewardError(RuntimeError):
    """A reward raised or returned something TRL cannot use; the message names the reward."""


class RewardTimeout(Exception):
    """A reward call ran past its ``timeout_s``."""


def call_with_timeout(fn: Callable[..., Any], timeout_s: float, **kwargs: Any) -> Any:
    """Call ``fn(**kwargs)`` in a daemon thread and wait at most ``timeout_s`` seconds for it.

    Works off the main thread (no signals). A call that runs over is abandoned, not killed: its
    thread finishes (or hangs) in the background and cannot keep the process alive at exit.

    >>> call_with_timeout(lambda x: x + 1, 1.0, x=1)
    2

    Raises:
        RewardTimeout: ``fn`` did not return in time.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(**kwargs)
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=target, name="reward-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise RewardTimeout(f"no result within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def is_async(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, partials, instances with ``async def __call__``).

    >>> async def f(completions, **kwargs): ...
    >>> is_async(functools.partial(f, x=1)), is_async(len)
    (True, False)
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(fn.__call__))


def check_scores(name: str, scores: Any, n: int) -> list[float | None]:
    """Return ``scores`` as ``n`` floats or None, or raise `RewardError` saying what is wrong with them.

    Accepts lists, tuples and array-likes (``.tolist()``) of real numbers (numpy scalars included);
    refuses booleans, strings, NaN and infinities, which would silently poison the group's advantage.

    >>> check_scores("r", (1, None, 0.5), 3)
    [1.0, None, 0.5]
    """
    if hasattr(scores, "tolist") and not isinstance(scores, list | tuple):
        scores = scores.tolist()
    if not isinstance(scores, list | tuple):
        raise RewardError(f"reward {name!r} returned {type(scores).__name__}, expected a list of {n} floats or None")
    if len(scores) != n:
        raise RewardError(f"reward {name!r} returned {len(scores)} scores for {n} completions (one per completion)")
    out: list[float | None] = []
    for s in scores:
        if s is None:
            out.append(None)
        elif isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(float(s)):
            raise RewardError(f"reward {name!r} returned {s!r}; every score must be a finite number or None")
        else:
            out.append(float(s))
    return out


_ATOMS = frozenset({str, bytes, int, float, bool, complex, type(None)})


def fresh(value: Any) -> Any:
    """A copy of the lists, dicts, tuples and sets in ``value`` down to its immutable leaves; other objects as is.

    What a reward is given is the trainer's record (logged, archived, shown on the card): each call gets
    its own copy, so a reward that sorts, overwrites or clears its arguments changes only that copy.

    >>> ids = [[1, 2], [3]]
    >>> mine = fresh(ids)
    >>> mine[0].clear(); ids
    [[1, 2], [3]]
    """
    if isinstance(value, list):
        if all(map(_ATOMS.__contains__, map(type, value))):  # texts, token ids: one C-level pass
            return value.copy()
        return [v if type(v) in _ATOMS else fresh(v) for v in value]
    if isinstance(value, dict):
        return {k: v if type(v) in _ATOMS else fresh(v) for k, v in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(fresh(v) for v in value)
    if isinstance(value, set | bytearray):
        return type(value)(value)
    return value


def copies(completions: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """`fresh` copies of a reward call's arguments (the trainer's state and callables are passed as they are)."""
    return fresh(completions), {k: fresh(v) for k, v in kwargs.items()}


def _rows(n: int, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Split per-completion keyword columns (lists of length ``n``) into one keyword set per completion."""
    return [{k: [v[i]] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()} for i in range(n)]


class NamedReward:
    """A reward function carrying its config name (TRL reads ``__name__`` for metrics) and error policy.

    The function is called the way TRL calls it, by keyword (``completions=``, ``prompts=``,
    ``completion_ids=``, every dataset column). With ``on_error="raise"`` an exception stops the
    run naming the reward, the error and the completion; with ``on_error="none"`` that completion
    scores None (TRL then leaves it out of this reward) and ``errors`` counts it.

    >>> from grpolab.rewards import tag_count_reward
    >>> r = NamedReward("tags", tag_count_reward)
    >>> r.__name__, r(completions=["<think>", "x"])
    ('tags', [0.25, 0.0])
    """

    def __init__(
        self, name: str, fn: Callable[..., Any], on_error: str = "raise", timeout_s: float | None = None
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"reward.{name}.on_error must be 'raise' or 'none', got {on_error!r}")
        if redaction.text(name) != name:  # TRL writes it into trainer_state.json, event files, wandb's history
            raise UserError(
                f"reward.{redaction.text(name)}: the reward's name looks like a token (grpolab.redaction hides it); "
                "reward names become metric names in files and trackers. Rename the reward."
            )
        self.__name__ = name
        self.fn = fn
        self.on_error = on_error
        self.timeout_s = timeout_s
        self.errors = 0
        self.timeouts = 0
        # called as hook(name, completions, kwargs) before each scoring: weight schedules, the rollout archive
        self.hooks: list[Callable[[str, list[Any], dict[str, Any]], None]] = []

    def __repr__(self) -> str:
        timeout = f", timeout_s={self.timeout_s!r}" if self.timeout_s is not None else ""
        return f"{type(self).__name__}({self.__name__!r}, {self.fn!r}, on_error={self.on_error!r}{timeout})"

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float | None]:
        """Score ``completions`` (TRL passes every dataset column as a keyword)."""
        for hook in self.hooks:
            hook(self.__name__, completions, kwargs)
        try:
            return check_scores(self.__name__, self._score(*copies(completions, kwargs)), len(completions))
        except Exception as e:
            settled = self._settle(e, completions)
            if settled is not None:
                return settled
        # score one completion at a time to find the ones that fail
        scores: list[float | None] = []
        for completion, row in zip(completions, _rows(len(completions), kwargs)):
            try:
                scores += check_scores(self.__name__, self._score(*copies([completion], row)), 1)
            except Exception as e:
                scores += self._settle(e, [completion]) or []
        return scores

    def _settle(self, error: Exception, completions: list[Any]) -> list[float | None] | None:
        """What a call that raised ``error`` scores under the error policy; None: score them one at a time.

        Raises:
            RewardError: the reward broke its contract, or ``on_error=raise`` and it failed or timed out.
        """
        if isinstance(error, RewardError):
            raise error
        if isinstance(error, RewardTimeout):
            return self._timed_out(len(completions))
        return self._failed(completions[0], error) if len(completions) == 1 else None

    def _score(self, completions: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the function; under ``timeout_s``, in a thread that is given up on when it runs over."""
        _RUNNING.append(self.__name__)
        try:
            if self.timeout_s is None:  # no thread, no overhead
                return self.fn(completions=completions, **kwargs)
            return call_with_timeout(self.fn, self.timeout_s, completions=completions, **kwargs)
        finally:
            _RUNNING.pop()

    def _timed_out(self, n: int) -> list[float | None]:
        """Apply the error policy to a call of ``n`` completions that ran past ``timeout_s``."""
        if self.on_error == "none":
            self.timeouts += n
            return [None] * n
        raise RewardError(
            f"reward {self.__name__!r} did not return within reward.{self.__name__}.timeout_s={self.timeout_s:g} s "
            f"(a call scoring {n} completion(s)). Fix the reward or raise its timeout_s, or set "
            f"reward.{self.__name__}.on_error=none to score such completions None."
        )

    def _failed(self, completion: Any, error: Exception) -> list[float | None]:
        """Apply the error policy to one completion whose scoring raised ``error``."""
        if self.on_error == "none":
            self.errors += 1
            return [None]
        raise RewardError(
            f"reward {self.__name__!r} raised {type(error).__name__}: {error} on completion {completion!r:.300}. "
            f"Fix the reward, or set reward.{self.__name__}.on_error=none to score such completions None."
        ) from error


class AsyncNamedReward(NamedReward):
    """`NamedReward` for an ``async def`` reward: TRL awaits it and gathers it with the other async rewards.

    >>> import asyncio
    >>> async def judge(completions, **kwargs):
    ...     return [float(len(c)) for c in completions]
    >>> asyncio.run(AsyncNamedReward("judge", judge)(completions=["ab", ""]))
    [2.0, 0.0]
    """

    async def __call__(self, completions: list[Any], **kwargs: Any) -> list[float | None]:  # type: ignore[override]
        """Score ``completions``, awaiting the wrapped coroutine function."""
        for hook in self.hooks:
            hook(self.__name__, completions, kwargs)
        try:
            return check_scores(self.__name__, await self._ascore(*copies(completions, kwargs)), len(completions))
        except Exception as e:
            settled = self._settle(e, completions)
            if settled is not None:
                return settled
        scores: list[float | None] = []
        for completion, row in zip(completions, _rows(len(completions), kwargs)):
            try:
                scores += check_scores(self.__name__, await self._ascore(*copies([completion], row)), 1)
            except Exception as e:
                scores += self._settle(e, [completion]) or []
        return scores

    async def _ascore(self, completions: list[Any], kwargs: dict[str, Any]) -> Any:
        """Await the function; under ``timeout_s``, cancel it when it runs over."""
        if self.timeout_s is None:
            return await self.fn(completions=completions, **kwargs)
        try:
            return await asyncio.wait_for(self.fn(completions=completions, **kwargs), self.timeout_s)
        except TimeoutError as e:
            raise RewardTimeout(f"no result within {self.timeout_s:g} s") from e


def wrap_reward(
    name: str, fn: Callable[..., Any], on_error: str = "raise", timeout_s: float | None = None
) -> NamedReward:
    """Wrap ``fn`` in the sync or async `NamedReward` that fits it."""
    return (AsyncNamedReward if is_async(fn) else NamedReward)(name, fn, on_error, timeout_s)
