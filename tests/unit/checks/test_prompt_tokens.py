"""The memory plan's prompt length comes from the real data, not a key that does not exist (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from grpolab.checks.arch import meta_arch
from grpolab.checks.plan import build_plan, setup_of
from grpolab.checks.prompt_tokens import PROMPT_TOKENS, prompt_tokens
from grpolab.config.schemas import register

register()


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=["hardware=single_gpu", *overrides])


def test_arithmetic_prompts_are_measured_with_the_tiny_tokenizer() -> None:
    tokens, source = prompt_tokens(composed("data.size=50"))
    assert source == "measured"
    assert 20 < tokens < 200 and tokens != PROMPT_TOKENS  # "What is 12 + 7?" with the system prompt, per character


def test_a_longer_jsonl_prompt_is_what_the_plan_sizes(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    rows = [{"prompt": "short", "answer": "1"}, {"prompt": "x" * 700, "answer": "2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = composed("data=jsonl", f"data.path={path}", "data.system_prompt=null")
    tokens, source = prompt_tokens(cfg)
    assert source == "measured" and tokens > 700  # the longest prompt, chat template included
    plan = build_plan(cfg, meta_arch(cfg.model))
    assert plan["assumptions"]["prompt"] == tokens and plan["assumptions"]["prompt_tokens_from"] == "measured"
    assert setup_of(cfg, tokens).prompt == tokens


def test_the_data_option_can_state_it() -> None:
    assert prompt_tokens(composed("data.max_prompt_tokens=300")) == (300, "data.max_prompt_tokens")


def test_unreachable_prompts_are_assumed_and_said_so() -> None:
    cfg = composed("data=gsm8k")  # a hub dataset that is not local: nothing is downloaded to measure it
    assert prompt_tokens(cfg) == (PROMPT_TOKENS, "assumed")
