"""Reward functions for GRPO and the one place that turns `cfg.reward` into TRL's inputs.

Every reward follows TRL's contract ``fn(completions, **columns) -> list[float | None]`` and accepts
plain-string and conversational completions. YAML names them by ``_target_`` (``_partial_: true``
binds parameters); :func:`build` wraps each in a :class:`NamedReward` (or :class:`AsyncNamedReward`
for ``async def`` rewards) so that TRL logs it under its config name (``rewards/format/mean``) and
applies its ``on_error`` policy.

Built in (``conf/reward/<name>.yaml``): ``format``, ``tag_count``, ``accuracy``, ``cosine``,
``length``, ``repetition``, ``reasoning_steps``. Rewards that run code or ask elsewhere: ``code``
(each row's tests in a local sandbox, `grpolab.rewards.code`), ``judge`` (a model behind an
OpenAI-compatible endpoint, `grpolab.rewards.judge`), ``remote`` (a reward served elsewhere,
`grpolab.cli.reward_server`), ``model`` (a sequence-classification reward model). Any other function
works by ``_target_``, ``trl.rewards.*`` included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpolab.rewards.accuracy import accuracy_reward, cosine_reward
from grpolab.rewards.code import code_reward
from grpolab.rewards.judge import judge_reward
from grpolab.rewards.named import AsyncNamedReward, NamedReward, RewardError, check_scores, is_async, wrap_reward
from grpolab.rewards.remote import remote_reward
from grpolab.rewards.reward_model import model_reward
from grpolab.rewards.style import length_reward, reasoning_steps_reward, repetition_reward
from grpolab.rewards.tags import format_reward, tag_count_reward

__all__ = [
    "AsyncNamedReward",
    "NamedReward",
    "RewardError",
    "accuracy_reward",
    "build",
    "check_scores",
    "code_reward",
    "cosine_reward",
    "format_reward",
    "is_async",
    "judge_reward",
    "length_reward",
    "model_reward",
    "reasoning_steps_reward",
    "remote_reward",
    "repetition_reward",
    "tag_count_reward",
    "wrap_reward",
]


def build(reward_cfg: Mapping[str, Any]) -> tuple[list[NamedReward], list[float]]:
    """Instantiate every reward of ``cfg.reward``: the functions and weights handed to GRPOTrainer.

    This is the only place that pairs functions with weights (a weight schedule's value at step 0;
    `grpolab.rewards.schedules.WeightSchedules` moves it as training goes). ``fn`` with ``_partial_: true`` binds
    the YAML's parameters to a reward function; without it, ``_target_`` is called and must return
    the reward (a factory such as ``trl.rewards.get_soft_overlong_punishment``). A function with a
    ``reward_name`` parameter is told its config name (to label metrics of its own).

    Raises:
        UserError: a reward's ``fn`` cannot be instantiated or is not callable.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from grpolab.errors import UserError
    from grpolab.rewards.schedules import from_config

    schedules = from_config(reward_cfg)
    funcs: list[NamedReward] = []
    weights: list[float] = []
    for name, spec in reward_cfg.items():
        fn_cfg = spec["fn"]
        target = fn_cfg.get("_target_") if isinstance(fn_cfg, Mapping) else fn_cfg
        try:
            fn = instantiate(fn_cfg)
        except InstantiationException as e:
            cause = e.__cause__ or e
            hint = (
                ""
                if isinstance(fn_cfg, Mapping) and fn_cfg.get("_partial_")
                else f" A reward function needs reward.{name}.fn._partial_=true (only factories are called)."
            )
            raise UserError(f"reward.{name}.fn ({target}) could not be built: {cause}.{hint}") from e
        if not callable(fn):
            raise UserError(f"reward.{name}.fn ({target}) built a {type(fn).__name__}, not a callable reward.")
        fn = _tell_name(fn, str(name))
        funcs.append(wrap_reward(str(name), fn, spec.get("on_error", "raise"), spec.get("timeout_s")))
        weights.append(schedules[str(name)](0))  # a scheduled weight starts here; WeightSchedules moves it
    return funcs, weights


def _tell_name(fn: Any, name: str) -> Any:
    """Bind ``reward_name=name`` when ``fn`` is a partial of a function that takes it and it is not set yet."""
    import functools
    import inspect

    if isinstance(fn, functools.partial) and "reward_name" not in fn.keywords:
        try:
            takes = "reward_name" in inspect.signature(fn.func).parameters
        except (TypeError, ValueError):
            takes = False
        if takes:
            return functools.partial(fn.func, *fn.args, **fn.keywords, reward_name=name)
    return fn
