"""The judge reward: a model behind any OpenAI-compatible endpoint scores each completion against a rubric.

The rubric is a YAML file with a ``user`` template (and optionally a ``system`` message) in which
``{prompt}``, ``{completion}`` and ``{answer}`` are filled in; the default asks for one number from
0 to 10. The reply is parsed as a number (the first one in it) or as JSON (``{"score": 7}``),
checked against ``scale`` and mapped onto 0..1. The API key is read from the environment variable
``api_key_env`` at call time, never from the config, and joins the secrets every writer redacts.

Requests run concurrently (at most ``concurrency`` at once), each with ``timeout_s`` and
``retries`` with backoff (`grpolab.rewards.http`). Replies are cached by request in
``cache_dir`` (the run directory by default), so a resumed run does not ask twice. A completion
whose request fails or whose reply does not parse follows ``on_error``: ``none`` scores it None
and counts it (``rewards/<name>/errors``, ``timeouts``), ``raise`` stops the run naming it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grpolab import redaction
from grpolab.errors import UserError
from grpolab.rewards.http import ReplyCache, ServiceError, post_json, public_url, request_key
from grpolab.rewards.kinds import COUNTED, tally
from grpolab.rewards.named import RewardError
from grpolab.rewards.text import completion_text

DEFAULT_RUBRIC = Path(__file__).parent / "templates" / "judge_rubric.yaml"
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_JSON_RE = re.compile(r"\{.*?\}", re.DOTALL)
_CACHES: dict[str, ReplyCache] = {}
_STATE_LOCK = threading.Lock()


def load_rubric(path: str | None) -> dict[str, str]:
    """The rubric's ``system`` (may be empty) and ``user`` templates from a YAML file (None: the default).

    Raises:
        UserError: the file is missing, is not YAML or has no ``user`` template.
    """
    import yaml

    file = Path(path).expanduser() if path else DEFAULT_RUBRIC
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"judge rubric {file}: cannot be read as YAML ({e}). Point rubric at a YAML file.") from e
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise UserError(f"judge rubric {file}: needs a 'user' template with {{prompt}}, {{completion}}, {{answer}}.")
    return {"system": str(data.get("system") or ""), "user": data["user"]}


def fill(template: str, prompt: str, completion: str, answer: str) -> str:
    """Put the three fields into ``template``; other braces stay as they are (JSON examples survive).

    >>> fill('Q: {prompt} A: {completion} Gold: {answer} Reply {"score": n}', "2+2?", "4", "4")
    'Q: 2+2? A: 4 Gold: 4 Reply {"score": n}'
    """
    fields = {"{prompt}": prompt, "{completion}": completion, "{answer}": answer}
    return re.sub(r"\{prompt\}|\{completion\}|\{answer\}", lambda m: fields[m.group()], template)


def parse_score(reply: str, parse: str, scale: Sequence[float], json_key: str = "score") -> float:
    """Map the judge's reply onto 0..1: the first number (``parse="number"``) or ``json_key`` of a JSON object.

    >>> parse_score("Score: 7/10", "number", [0, 10]), parse_score('{"score": 3}', "json", [1, 5])
    (0.7, 0.5)

    Raises:
        ValueError: no score in the reply, or one outside ``scale``.
    """
    low, high = float(scale[0]), float(scale[1])
    if parse == "json":
        found = next((m for m in _JSON_RE.findall(reply) if json_key in m), None)
        try:
            value = float(json.loads(found)[json_key]) if found else None
        except (ValueError, TypeError, KeyError):
            value = None
    else:
        match = _NUMBER_RE.search(reply)
        value = float(match.group()) if match else None
    if value is None:
        raise ValueError(f"no score in the judge's reply {reply[:200]!r}")
    if not low <= value <= high:
        raise ValueError(f"the judge's score {value:g} is outside the scale {low:g}..{high:g}")
    return (value - low) / (high - low)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else completion_text(value) if isinstance(value, list) else str(value)


def run_directory() -> str | None:
    """The run directory of this process (every rank's, as the pipeline sets it), or None outside a run."""
    import os

    from grpolab.files import RUN_DIR_ENV

    return os.environ.get(RUN_DIR_ENV) or None


def _cache(cache_dir: str | None, name: str) -> ReplyCache:
    if cache_dir == "auto":
        cache_dir = run_directory()
    path = Path(cache_dir).expanduser() / f"judge_cache_{name}.jsonl" if cache_dir else None
    key = str(path) if path else f"memory:{name}"
    with _STATE_LOCK:
        if key not in _CACHES:
            _CACHES[key] = ReplyCache(path)
        return _CACHES[key]


async def judge_reward(
    completions: list[Any],
    *,
    base_url: str,
    model: str,
    rubric: str | None = None,
    scale: Sequence[float] = (0, 10),
    parse: str = "number",
    json_key: str = "score",
    answer_column: str | None = None,
    api_key_env: str | None = "OPENAI_API_KEY",
    max_tokens: int = 16,
    temperature: float = 0.0,
    timeout_s: float = 30.0,
    retries: int = 2,
    backoff_s: float = 0.5,
    concurrency: int = 8,
    cache_dir: str | None = "auto",
    on_error: str = "none",
    reward_name: str = "judge",
    prompts: list[Any] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Ask the judge model to score each completion; 0..1 per completion, None where it could not (``on_error``).

    Args:
        completions: Plain or conversational completions.
        base_url: The endpoint's base, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is added).
        model: The model name the endpoint serves.
        rubric: A rubric YAML file (``system``, ``user``); None: the default 0-10 rubric.
        scale: The lowest and highest score the rubric allows.
        parse: ``number`` (the first number in the reply) or ``json`` (``json_key`` of an object).
        json_key: The key holding the score when ``parse="json"``.
        answer_column: The dataset column filled in as ``{answer}`` (None: empty).
        api_key_env: The environment variable holding the API key (unset or None: no key sent).
        max_tokens: Tokens the judge may reply with.
        temperature: The judge's sampling temperature (0: greedy, so the cache is exact).
        timeout_s: Seconds per request before it counts as failed (then retried).
        retries: Retries per request, with exponential backoff from ``backoff_s``.
        backoff_s: The first backoff in seconds.
        concurrency: Requests in flight at once.
        cache_dir: Where replies are kept by request; ``auto``: the run directory (in memory outside a
            Hydra job); None: in memory only.
        on_error: ``none`` (score None and count) or ``raise`` for a failed request or unparseable reply.
        reward_name: The reward's config name (set by `grpolab.rewards.build`).
        prompts: The prompts, as TRL passes them.
        log_metric: TRL's callback for scalar metrics.
        **kwargs: The dataset's columns and whatever else TRL passes.

    >>> import asyncio
    >>> asyncio.run(judge_reward(["4"], base_url="http://127.0.0.1:9/v1", model="m", retries=0, timeout_s=1))
    [None]
    """
    key_value = os.environ.get(api_key_env or "", "") if api_key_env else ""
    if key_value:
        redaction.add_literals([key_value])
    headers = {"Authorization": f"Bearer {key_value}"} if key_value else {}
    template = load_rubric(rubric)
    cache = _cache(cache_dir, reward_name)
    hits_before = cache.hits
    url = base_url.rstrip("/") + "/chat/completions"
    n = len(completions)
    answers = kwargs.get(answer_column) if answer_column else None
    limit = asyncio.Semaphore(max(1, concurrency))
    faults: Counter[str] = Counter()

    async def one(i: int) -> float | None:
        prompt = _text(prompts[i] if prompts and i < len(prompts) else "")
        answer = _text(answers[i] if isinstance(answers, list) and i < len(answers) else answers)
        user = fill(template["user"], prompt, _text(completions[i]), answer)
        messages = ([{"role": "system", "content": template["system"]}] if template["system"] else []) + [
            {"role": "user", "content": user}
        ]
        payload = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        key = request_key({"url": public_url(url), **payload})
        try:
            reply = cache.get(key)
            if reply is None:
                async with limit:
                    body = await post_json(
                        url, payload, headers=headers, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s
                    )
                try:
                    reply = str(body["choices"][0]["message"]["content"] or "")
                except (KeyError, IndexError, TypeError) as e:
                    raise ServiceError(f"{public_url(url)}: not a chat completion ({str(body)[:200]})") from e
                cache.put(key, reply)
            return parse_score(reply, parse, scale, json_key)
        except (ServiceError, ValueError) as e:
            kind = "timeouts" if isinstance(e, ServiceError) and e.timeout else "errors"
            if on_error != "none":
                raise RewardError(
                    f"reward {reward_name!r}: {e}. Set reward.{reward_name}.on_error=none to score such "
                    "completions None, or check the judge's endpoint and rubric."
                ) from e
            faults[kind] += 1
            return None

    scores = list(await asyncio.gather(*(one(i) for i in range(n))))
    hits = cache.hits - hits_before
    totals = tally(reward_name, kwargs.get("trainer_state"), {**faults, "cache_hits": hits}, COUNTED["judge"])
    if log_metric is not None:
        for kind, value in totals.items():
            log_metric(f"rewards/{reward_name}/{kind}", float(value))
    return scores
