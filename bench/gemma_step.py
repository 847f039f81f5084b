"""The real gemma-3-270m's GRPO step on the CPU: `python train.py` against plain TRL, interleaved.

    python bench/gemma_step.py                          # 2 repeats x (ours, plain), 4 steps each
    python bench/gemma_step.py --repeat 3 --steps 6
    python bench/gemma_step.py --plain --steps 4 --output-dir outputs/gemma_plain   # the plain side alone

Both sides train the same weights: the packaged Q4_K_M GGUF of google/gemma-3-270m, dequantized
once by `model.gguf=packaged` into the grpolab cache (the plain side loads that directory; the
conversion is not timed). Same arithmetic prompts, same rewards (format, tag_count), same
GRPOConfig values: 2 prompts x 4 completions of 32 tokens per step, fp32 on the CPU, one torch
thread (hardware=auto's CPU choice). The plain side gives the tokenizer Gemma's chat template and
the generation config its <end_of_turn> stop, as the model option does for ours. Each run goes
through bench/probe.py; run order alternates. Writes <output-dir>/gemma_step.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as common  # noqa: E402  (bench/run.py: timed_run, run_stats, compare)
from plain_trl import SEED, dataset  # noqa: E402

GEOMETRY = {
    "num_generations": 4,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 32,
    "learning_rate": 1e-5,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
}
OURS = ["model=gemma", "model.gguf=packaged", "preflight=skip", "rollouts.enabled=false"]


def gemma_dir() -> Path:
    """The dequantized packaged GGUF (converted on first use, as model.gguf=packaged does)."""
    from omegaconf import OmegaConf

    from grpolab.config.schemas import ModelSchema
    from grpolab.train.gguf import converted_dir

    option = OmegaConf.load(common.REPO / "conf" / "model" / "gemma-3-270m.yaml").model
    return converted_dir(OmegaConf.merge(OmegaConf.structured(ModelSchema), option, {"gguf": "packaged"}))


def plain(steps: int, output_dir: str) -> None:
    """Train gemma-3-270m with TRL directly: the baseline."""
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from grpolab.rewards.tags import format_reward, tag_count_reward

    torch.set_num_threads(1)
    option = OmegaConf.load(common.REPO / "conf" / "model" / "gemma-3-270m.yaml").model
    source = gemma_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = option.default_chat_template
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="eager")
    model.generation_config.eos_token_id = [1, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    args = GRPOConfig(
        output_dir=output_dir,
        **GEOMETRY,
        beta=0.0,
        loss_type="dapo",
        scale_rewards="group",
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=SEED,
        data_seed=SEED,
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        reward_weights=[1.0, 1.0],
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[format_reward, tag_count_reward],
        args=args,
        train_dataset=dataset(),
        processing_class=tokenizer,
    )
    trainer.train()


def command(work: Path, name: str, steps: int, i: int) -> list[str]:
    """The probe command line of one timed run."""
    probe = [sys.executable, str(BENCH / "probe.py"), str(work / f"{name}-{i}.json")]
    out = work / f"{name}-{i}"
    if name == "ours":
        own = [f"trainer.{k}={v}" for k, v in GEOMETRY.items()]
        return [*probe, "train.py", *OURS, *own, f"trainer.max_steps={steps}", f"hydra.run.dir={out}"]
    return [*probe, "bench/gemma_step.py", "--plain", "--steps", str(steps), "--output-dir", str(out)]


def main(argv: list[str] | None = None) -> None:
    """Time both sides, alternating which goes first; print and save the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="run the plain TRL side once (under the probe)")
    parser.add_argument("--output-dir", default="outputs/gemma_step")
    args = parser.parse_args(argv)
    if args.plain:
        plain(args.steps, args.output_dir)
        return
    gemma_dir()  # convert before timing anything
    work = Path(args.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
    for i in range(args.repeat):
        for name in ("ours", "plain") if i % 2 == 0 else ("plain", "ours"):
            cmd = command(work, name, args.steps, i)
            record = common.timed_run(cmd, work / f"{name}-{i}.json", work / f"{name}-{i}.log", env)
            runs[name].append(common.run_stats(record))
            med = statistics.median(runs[name][-1]["step_time"] or [float("nan")])
            print(f"  {name:<5} #{i + 1}: first step {runs[name][-1]['first_step_s']:.1f} s, median step {med:.2f} s")
    result = {"steps": args.steps, "geometry": GEOMETRY, "runs": runs, "compare": common.compare(runs)}
    (work / "gemma_step.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    c = result["compare"]
    for name in ("ours", "plain"):
        side = c[name]
        print(
            f"{name:<5} step_time median {side['step_time']['median']:.2f} s (p90 {side['step_time']['p90']:.2f}), "
            f"first step {side['first_step_s']['median']:.1f} s, peak RSS {side['peak_rss_mb']['median']:.0f} MB"
        )
    print(f"ratio ours/plain: step_time {c['step_time_ratio']:.3f}, peak RSS {c['peak_rss_ratio']['median']:.3f}")


if __name__ == "__main__":
    main()
