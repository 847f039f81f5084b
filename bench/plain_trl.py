"""The embedded default run (`python train.py`) written by hand against TRL: the benchmark's baseline.

    python bench/plain_trl.py                                # 400 steps, like `python train.py`
    python bench/plain_trl.py --steps 40 --output-dir outputs/plain_trl/demo
    python bench/plain_trl.py --steps 40 --threads 1         # torch.set_num_threads(1), as hardware=cpu does
    python bench/plain_trl.py --steps 40 --trl-defaults      # TRL's own bf16 and gradient checkpointing defaults
    python bench/plain_trl.py --steps 40 --trl-defaults bf16 # only TRL's precision default

Same model (the tiny Qwen3-shaped model from grpolab's cache, built from the same architecture and
seed), same data (the arithmetic prompts as a conversational `prompt` column, shuffled with the
seed), the same three reward functions (unwrapped), the same `GRPOConfig` values and seed. No Hydra,
no run directory bookkeeping, no preflight, no card: TRL's own defaults for everything else, its
printer callback included. At the end it saves the model and writes `trainer.state.log_history` to
`<output-dir>/metrics.jsonl`, one row per log, as grpolab does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

SEED = 42
# conf/model/tiny.yaml's `tiny:` block (tests/test_bench.py checks they agree)
TINY_ARCH = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 512,
    "initializer_range": 0.2,
}
SYSTEM_PROMPT = "Think in <think></think>, answer in <answer></answer>."


def grpo_args(
    output_dir: str, steps: int, save_steps: int = 100, seed: int = SEED, trl_defaults: Collection[str] = ()
) -> Any:
    """The GRPOConfig of the embedded default (model=tiny's trainer values and variant, hardware=cpu).

    ``trl_defaults`` names settings left to TRL, which turns both on: ``bf16`` (autocast, even on a
    CPU) and ``checkpointing`` (gradient checkpointing). grpolab states them instead: fp32 on the
    CPU (hardware=cpu) and no checkpointing (model.gradient_checkpointing=false).
    """
    from trl import GRPOConfig

    own: dict[str, Any] = {"bf16": False, "activation_checkpointing": False}
    for name, key in (("bf16", "bf16"), ("checkpointing", "activation_checkpointing")):
        if name in trl_defaults:
            del own[key]
    return GRPOConfig(
        **own,
        output_dir=output_dir,
        learning_rate=3e-3,
        beta=0.04,  # model=tiny's default variant, algo=trl_default_kl
        num_generations=8,
        per_device_train_batch_size=16,
        gradient_accumulation_steps=1,
        max_completion_length=16,
        temperature=1.0,
        loss_type="dapo",
        scale_rewards="group",
        max_steps=steps,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=5,
        logging_steps=1,
        save_steps=save_steps,
        save_total_limit=2,
        disable_tqdm=True,
        log_completions=False,
        seed=seed,
        data_seed=seed,
        reward_weights=[1.0, 1.0, 1.0],
        report_to="none",
        use_cpu=True,
    )


def dataset(seed: int = SEED) -> Any:
    """2,000 arithmetic prompts (+ and -, operands up to 20) with gold answers, conversational, shuffled."""
    from datasets import Dataset

    from grpolab.train.data import arithmetic_rows

    rows = arithmetic_rows(2000, 20, ["+", "-"], seed)
    ds = Dataset.from_list(rows).map(
        lambda ex: {"prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ex["prompt"]}]}
    )
    return ds.shuffle(seed=seed)


def main(argv: list[str] | None = None) -> None:
    """Train the default GRPO run with TRL directly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--save-steps", type=int, default=100)
    parser.add_argument("--output-dir", default="outputs/plain_trl/run")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--trl-defaults",
        nargs="?",
        const="bf16,checkpointing",
        default="",
        help="leave these to TRL's defaults (on): bf16, checkpointing (both when given alone)",
    )
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from grpolab.rewards.progress import format_progress_reward
    from grpolab.rewards.tags import format_reward, tag_count_reward
    from grpolab.train.models import tiny_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = tiny_model_dir(TINY_ARCH, SEED)  # built once into $GRPOLAB_CACHE, then loaded like any checkpoint
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[format_reward, tag_count_reward, format_progress_reward],
        args=grpo_args(args.output_dir, args.steps, args.save_steps, trl_defaults=args.trl_defaults.split(",")),
        train_dataset=dataset(),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(args.output_dir)
    rows = [{"step": h.get("step"), **h} for h in trainer.state.log_history]
    lines = "".join(json.dumps(row, default=float) + "\n" for row in rows)
    (Path(args.output_dir) / "metrics.jsonl").write_text(lines, encoding="utf-8")


if __name__ == "__main__":
    main()
