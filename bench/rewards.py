"""Completions per second for every built-in reward.

    python bench/rewards.py                  # 10,000 completions per text reward, 1,000 for math-verify ones
    python bench/rewards.py --n 50000 --conversational

The text rewards (format, tag_count, length, repetition, reasoning_steps) should score 10,000
completions in well under 100 ms. accuracy and cosine call math-verify (sympy) once per distinct
(gold, answer) pair: they are timed cold (empty cache, distinct answers) on fewer completions.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import Callable
from typing import Any

from grpolab.rewards import accuracy as accuracy_module
from grpolab.rewards import (
    accuracy_reward,
    cosine_reward,
    format_reward,
    length_reward,
    reasoning_steps_reward,
    repetition_reward,
    tag_count_reward,
)

TEXT_REWARDS: dict[str, Callable[..., Any]] = {
    "format": format_reward,
    "tag_count": tag_count_reward,
    "length": functools.partial(length_reward, max_tokens=256),
    "repetition": repetition_reward,
    "reasoning_steps": reasoning_steps_reward,
}
MATH_REWARDS: dict[str, Callable[..., Any]] = {
    "accuracy": accuracy_reward,
    "cosine": functools.partial(cosine_reward, max_tokens=256),
}


def completions(n: int, seed: int = 0) -> tuple[list[str], list[str], list[list[int]]]:
    """``n`` varied completions of a few hundred characters, their gold answers and fake token ids."""
    rng = random.Random(seed)
    texts, golds = [], []
    for i in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        gold, said = a + b, a + b + rng.choice([0, 0, 1, -1, 10 + i])
        steps = "\n".join(f"Step {k}: add the {k}th digits and carry." for k in range(1, rng.randint(1, 5)))
        kind = i % 4
        if kind == 0:
            text = f"<think>\n{steps}\n</think>\n<answer>{said}</answer>"
        elif kind == 1:
            text = f"I think {a} plus {b} is {said}. " + "Let me check again. " * rng.randint(0, 10)
        elif kind == 2:
            text = f"<think>{steps}</think><answer>{said}</answer> and some trailing text"
        else:
            text = f"<think><think>{a}+{b}</think>\n\\boxed{{{said}}}"
        texts.append(text)
        golds.append(str(gold))
    ids = [list(range(len(t) // 4)) for t in texts]
    return texts, golds, ids


def bench(fn: Callable[..., Any], kwargs: dict[str, Any], repeat: int, cold: bool = False) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        if cold:
            accuracy_module._CACHE.clear()
        start = time.perf_counter()
        fn(**kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Print one line per reward: completions, best time and completions per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="completions per text reward")
    parser.add_argument("--n-math", type=int, default=1_000, help="completions per math-verify reward")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--conversational", action="store_true", help="[{'role': 'assistant', ...}] completions")
    args = parser.parse_args()

    print(f"{'reward':<16} {'completions':>11} {'best ms':>9} {'completions/s':>14}")
    for names, n, cold in ((TEXT_REWARDS, args.n, False), (MATH_REWARDS, args.n_math, True)):
        texts, golds, ids = completions(n)
        shaped: list[Any] = [[{"role": "assistant", "content": t}] for t in texts] if args.conversational else texts
        kwargs = {"completions": shaped, "answer": golds, "completion_ids": ids}
        for name, fn in names.items():
            warm = accuracy_module.POOL_THRESHOLD if cold else 8  # imports, patterns, the process pool
            fn(**{k: v[:warm] for k, v in kwargs.items()})
            seconds = bench(fn, kwargs, 1 if cold else args.repeat, cold)
            print(f"{name:<16} {n:>11,} {seconds * 1000:>9.1f} {n / seconds:>14,.0f}")


if __name__ == "__main__":
    main()
