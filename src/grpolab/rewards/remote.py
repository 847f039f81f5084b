"""The remote reward: score completions with a reward served elsewhere (`grpolab.cli.reward_server`).

Each batch goes out as one ``POST <url>/score`` holding the completions, the prompts and the
dataset's columns (everything TRL passes that is JSON: ``tests``, ``answer``, ``completion_ids``...);
one score per completion comes back, None allowed. The request has ``timeout_s`` and ``retries``
with backoff (`grpolab.rewards.http`); when the server cannot be reached or replies with something
other than one score per completion, ``on_error`` applies: ``none`` scores the batch None and counts
it (``rewards/<name>/errors``, ``timeouts``), ``raise`` stops the run naming the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from grpolab import redaction
from grpolab.rewards.http import ServiceError, post_json, public_url
from grpolab.rewards.kinds import COUNTED, tally
from grpolab.rewards.named import RewardError, check_scores

NOT_DATA = {"trainer_state", "log_extra", "log_metric", "environments", "prompts"}


def json_columns(kwargs: dict[str, Any], only: list[str] | None = None) -> dict[str, Any]:
    """The keyword columns that can travel as JSON (``only``: just those), without TRL's callbacks and state.

    >>> json_columns({"tests": ["t"], "trainer_state": object(), "answer": ["4"]})
    {'tests': ['t'], 'answer': ['4']}
    """
    out = {}
    for key, value in kwargs.items():
        if key in NOT_DATA or (only is not None and key not in only):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


async def remote_reward(
    completions: list[Any],
    *,
    url: str,
    reward: str | None = None,
    columns: list[str] | None = None,
    timeout_s: float = 120.0,
    retries: int = 2,
    backoff_s: float = 0.5,
    api_key_env: str | None = None,
    on_error: str = "none",
    reward_name: str = "remote",
    prompts: list[Any] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Score ``completions`` with the reward served at ``url``.

    Args:
        completions: Plain or conversational completions (sent as they are).
        url: The server, e.g. ``http://10.0.0.5:8765`` (``/score`` is added).
        reward: The served reward's name when the server holds several.
        columns: The dataset columns to send; None: every JSON-able one.
        timeout_s: Seconds for the whole batch before the attempt counts as failed (then retried).
        retries: Retries, with exponential backoff from ``backoff_s``.
        backoff_s: The first backoff in seconds.
        api_key_env: An environment variable whose value is sent as a bearer token (the server's ``--token-env``).
        on_error: ``none`` (the batch scores None and is counted) or ``raise``.
        reward_name: The reward's config name (set by `grpolab.rewards.build`).
        prompts: The prompts, as TRL passes them.
        log_metric: TRL's callback for scalar metrics.
        **kwargs: The dataset's columns and whatever else TRL passes.

    >>> import asyncio
    >>> asyncio.run(remote_reward(["x"], url="http://127.0.0.1:9", retries=0, timeout_s=1))
    [None]
    """
    n = len(completions)
    token = os.environ.get(api_key_env, "") if api_key_env else ""
    if token:
        redaction.add_literals([token])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload: dict[str, Any] = {"completions": completions, "prompts": prompts, "columns": json_columns(kwargs, columns)}
    if reward:
        payload["reward"] = reward
    endpoint = url.rstrip("/") + "/score"
    try:
        body = await post_json(endpoint, payload, headers=headers, timeout_s=timeout_s, retries=retries,
                               backoff_s=backoff_s)  # fmt: skip
        if not isinstance(body, dict) or "scores" not in body:
            raise ServiceError(f"{public_url(endpoint)}: no 'scores' in the reply ({str(body)[:200]})")
        try:
            scores = check_scores(reward_name, body["scores"], n)
        except RewardError as e:
            raise ServiceError(f"{public_url(endpoint)}: {e}") from e
    except ServiceError as e:
        if on_error != "none":
            raise RewardError(
                f"reward {reward_name!r}: {e}. Check the reward server, or set reward.{reward_name}.on_error=none "
                "to score such batches None."
            ) from e
        faults = {"timeouts" if e.timeout else "errors": n}
        scores = [None] * n
    else:
        faults = {}
    totals = tally(reward_name, kwargs.get("trainer_state"), faults, COUNTED["remote"])
    if log_metric is not None:
        for kind, value in totals.items():
            log_metric(f"rewards/{reward_name}/{kind}", float(value))
    return scores
