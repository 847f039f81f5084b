"""The facts each section of the model card states, gathered from the config, run.json and the metrics.

`grpolab.rundir.card.summarize` calls one function per section (choices, hyperparameters, the GRPO
variant, rewards and their faults, tracker, quick start, samples, the GGUF source, the hardware choice).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab.rundir.overview import duration
from grpolab.turns import lead_turns

GENERIC_QUESTION = "A shop sells pens at 3 dollars each. How much do 7 pens cost?"
KEY_SETTINGS = ("num_generations", "beta", "loss_type", "scale_rewards", "learning_rate")
ALGO_SETTINGS = ("loss_type", "beta", "scale_rewards", "epsilon", "epsilon_high", "delta", "importance_sampling_level")
ALGO_SETTINGS += ("mask_truncated_completions", "top_entropy_quantile", "steps_per_generation", "num_iterations")
ALGO_SETTINGS += ("use_bias_correction_kl", "sapo_temperature_pos", "sapo_temperature_neg", "cast_lm_head_to_fp32")
ALGO_SETTINGS += ("off_policy_mask_threshold", "top_p", "top_k", "temperature", "dynamic_sampling")


def wall_time(record: dict[str, Any]) -> str:
    """How long the run took, and of that how long it trained."""
    start, end = record.get("started_at"), record.get("finished_at")
    if not start:
        return "—"
    if not end:
        return f"running since {start}"
    total = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    runtime = record.get("train_runtime_s")
    return duration(total, "—") + (f" (of which training {duration(runtime)})" if runtime else "")


def choices(cfg: DictConfig, run_dir: Path) -> str:
    """The config-group choices of the run (`model=tiny reward=[format,tag_count] ...`)."""
    picked = {"model": cfg.model.name, "reward": f"[{','.join(cfg.reward)}]", "data": cfg.data.name}
    picked |= {"hardware": cfg.hardware.name, "logger": cfg.logger.name, "peft": "lora" if cfg.peft else "none"}
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        chosen = OmegaConf.load(hydra_yaml).hydra.runtime.choices
        picked |= {k: v for k, v in chosen.items() if "/" not in k and v is not None and k not in ("reward", "trainer")}
    return " ".join(f"{k}={v}" for k, v in picked.items())


def hyperparameters(cfg: DictConfig, world_size: int, step: int) -> list[tuple[str, Any]]:
    """The key GRPO settings always, then every other trainer field that differs from its default."""
    from grpolab.config.schemas import TrainSchema

    tr = cfg.trainer
    defaults = dataclasses.asdict(TrainSchema().trainer)  # TRL's GRPOConfig defaults, plus grpolab's switches
    batch = tr.per_device_train_batch_size * world_size * tr.gradient_accumulation_steps
    rows: list[tuple[str, Any]] = [(k, tr[k]) for k in KEY_SETTINGS]
    rows += [
        ("effective batch", f"{batch} completions ({batch // tr.num_generations} prompts x {tr.num_generations})"),
        ("max_completion_length", tr.max_completion_length),
        ("temperature", tr.temperature),
        (
            "steps",
            f"{step} of max_steps={tr.max_steps}" if tr.max_steps > 0 else f"{step} ({tr.num_train_epochs} epochs)",
        ),
    ]
    shown = {*KEY_SETTINGS, "max_completion_length", "temperature", "max_steps"}
    values = OmegaConf.to_container(tr, resolve=True)
    assert isinstance(values, dict)
    rows += [(k, v) for k, v in values.items() if k not in shown and defaults.get(k) != v]
    return rows


def algo(cfg: DictConfig) -> dict[str, Any] | None:
    """The GRPO variant (`algo=`): its paper and the effective values of the settings that define it."""
    algo = cfg.get("algo")
    if not algo or not algo.get("name"):
        return None  # a run from before `algo=` existed
    from grpolab.config.schemas import TrainerNode

    defaults, values = dataclasses.asdict(TrainerNode()), OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(values, dict)
    always = ("loss_type", "beta", "scale_rewards")
    settings = [(k, values[k]) for k in ALGO_SETTINGS if k in values and (k in always or values[k] != defaults[k])]
    return {**OmegaConf.to_container(algo, resolve=True), "settings": settings}


def rewards(cfg: DictConfig) -> list[dict[str, Any]]:
    """Each reward: its name, function, parameters (secrets redacted) and weight or schedule."""
    from grpolab.rewards.schedules import from_config

    weights = from_config(cfg.reward)
    out = []
    for name, spec in cfg.reward.items():
        fn = OmegaConf.to_container(spec.fn, resolve=True)
        assert isinstance(fn, dict)
        params = {k: v for k, v in fn.items() if k not in ("_target_", "_partial_")}
        out.append(
            {
                "name": name,
                "weight": weights[name].describe(),
                "schedule": None if weights[name].constant else weights[name],
                "target": fn.get("_target_"),
                "params": params or "—",
                "on_error": spec.get("on_error", "raise"),
                "timeout_s": spec.get("timeout_s"),
            }
        )
    return out


def reward_faults(cfg: DictConfig, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewards that raised or timed out on some completions (scored None under on_error=none), with counts."""
    out = []
    for name, spec in cfg.reward.items():
        counts = {
            kind: max((int(h.get(f"rewards/{name}/{kind}") or 0) for h in history), default=0)
            for kind in ("errors", "timeouts")
        }
        if any(counts.values()):
            out.append(
                {"name": name, "on_error": spec.get("on_error", "raise"), "timeout_s": spec.get("timeout_s"), **counts}
            )
    return out


def tracker(cfg: DictConfig, record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Where the run's curves are: the tracker, its mode, and the wandb URL when it can be known."""
    run_id, entity = record.get("wandb_run_id"), cfg.logger.entity
    online = cfg.logger.name == "wandb" and record.get("wandb_mode") != "offline"
    url = f"https://wandb.ai/{entity}/{cfg.logger.project}/runs/{run_id}" if online and entity and run_id else None
    return {
        "name": cfg.logger.name,
        "online": online,
        "url": url,
        "run_id": run_id,
        "project": cfg.logger.project,
        "dir": str(run_dir.resolve()),
        "record": tracker_record(record),  # trackio's run and database, mlflow's store (grpolab.train.trackers)
    }


def tracker_record(record: dict[str, Any]) -> dict[str, Any]:
    """run.json's ``tracker``, with the command that opens an MLflow store."""
    tracker = dict(record.get("tracker") or {})
    uri = str(tracker.get("uri") or "")
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        tracker["ui"] = f"mlflow ui --backend-store-uri {unquote(urlparse(uri).path)}"
    elif uri:
        tracker["ui"] = f"mlflow ui --backend-store-uri {uri}"
    return tracker


def quick_start(cfg: DictConfig, record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What the quick start loads (the hub repo, the run directory or its latest checkpoint) and asks it."""
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    model, checkpoint = record.get("hub_repo_id"), None
    if not model and record.get("status") == "completed":
        model = str(run_dir.resolve())
    elif not model and checkpoints:
        model, checkpoint = str(checkpoints[-1].resolve()), checkpoints[-1].name
    items = (record.get("samples") or {}).get("items")
    if items:  # a real training prompt, system turn included
        messages = items[0]["prompt"]
    elif record.get("example_prompt"):  # the first training prompt, recorded when the data was built
        messages = record["example_prompt"]
    else:
        lead = lead_turns(cfg.data.system_prompt, cfg.data.get("few_shot"))
        messages = [*lead, {"role": "user", "content": GENERIC_QUESTION}]
    return {
        "model": json.dumps(model) if model else None,
        "checkpoint": checkpoint,
        "turns": [json.dumps(m, ensure_ascii=False) for m in messages],
        "max_new_tokens": cfg.trainer.max_completion_length,
    }


def samples(record: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """The sample completions kept in run.json, each with its prompt's user turn; and their step."""
    samples = record.get("samples") or {}
    items = []
    for s in samples.get("items", []):
        prompt = next((m["content"] for m in reversed(s["prompt"]) if m.get("role") == "user"), str(s["prompt"]))
        items.append({**s, "prompt": prompt})
    return items, samples.get("step")


def gguf_source(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The GGUF file the weights were dequantized from (config.json `dequantized_from`), for `model.gguf=` runs."""
    gguf = cfg.model.get("gguf")
    if not gguf:
        return None
    checkpoints = sorted(run_dir.glob("checkpoint-*/config.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    for config in [run_dir / "config.json", *reversed(checkpoints)]:
        try:
            return json.loads(config.read_text())["dequantized_from"]
        except (OSError, ValueError, KeyError):
            continue
    return {"file": Path(gguf).name if gguf != "packaged" else f"{cfg.model.packaged_gguf} (packaged)"}


def why_hardware(record: dict[str, Any]) -> list[str]:
    """Why the run got its device, when hardware=auto chose it (run.json `hardware.why`)."""
    why = (record.get("hardware") or {}).get("why")
    return [f"({why})"] if why else []
