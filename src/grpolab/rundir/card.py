"""The model card (README.md) of a run directory, rendered from run.json, config.yaml and metrics.jsonl.

    python -m grpolab.rundir.card outputs/runs/<date>/<time>     # re-render README.md and reward.png

One summary (:func:`summarize`) feeds one template (``templates/model_card.md.j2``); the front
matter goes through ``huggingface_hub.ModelCardData``, so the result is a valid Hub card. The card
is written at the start of a run, after every checkpoint, at the end and when the run fails.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab import redaction
from grpolab.rewards.kinds import outside_rewards
from grpolab.rundir import results, runinfo
from grpolab.rundir.overview import duration

CARD = "README.md"
PLOT = "reward.png"
TEMPLATES = Path(__file__).parent / "templates"
GENERIC_QUESTION = "A shop sells pens at 3 dollars each. How much do 7 pens cost?"
VERSIONS = {"trl": "TRL", "transformers": "Transformers", "torch": "PyTorch", "datasets": "Datasets"}
VERSIONS |= {"tokenizers": "Tokenizers", "accelerate": "Accelerate", "deepspeed": "DeepSpeed", "hydra-core": "Hydra"}
KEY_SETTINGS = ("num_generations", "beta", "loss_type", "scale_rewards", "learning_rate")
ALGO_SETTINGS = ("loss_type", "beta", "scale_rewards", "epsilon", "epsilon_high", "delta", "importance_sampling_level")
ALGO_SETTINGS += ("mask_truncated_completions", "top_entropy_quantile", "steps_per_generation", "num_iterations")
ALGO_SETTINGS += ("use_bias_correction_kl", "sapo_temperature_pos", "sapo_temperature_neg", "cast_lm_head_to_fp32")
ALGO_SETTINGS += ("off_policy_mask_threshold", "top_p", "top_k", "temperature", "dynamic_sampling")
TABLE_ROWS = 20


def num(value: Any) -> str:
    """Format a number for a table: 4 significant digits, `—` for a missing value.

    >>> num(0.123456), num(3), num(None), num(1e-6)
    ('0.1235', '3', '—', '1e-06')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def ci(interval: Any) -> str:
    """Format a 95% interval after its value: `` [0.25, 0.75]``, nothing when there is none.

    >>> ci([0.25, 0.75]), ci(None)
    (' [0.25, 0.75]', '')
    """
    return f" [{num(interval[0])}, {num(interval[1])}]" if interval else ""


def printable(text: str) -> str:
    r"""Show control characters (other than newline and tab) as escapes: ``"a\x00b"`` becomes ``a\x00b``."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def cell(value: Any) -> str:
    """Make ``value`` safe inside one Markdown table cell (no pipes or line breaks)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return printable(text.replace("|", "\\|").replace("\r", "").replace("\n", " ⏎ "))


def fenced(text: str, lang: str = "text") -> str:
    """A fenced code block longer than any backtick run inside ``text``."""
    text = printable(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _wall_time(record: dict[str, Any]) -> str:
    start, end = record.get("started_at"), record.get("finished_at")
    if not start:
        return "—"
    if not end:
        return f"running since {start}"
    total = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    runtime = record.get("train_runtime_s")
    return duration(total, "—") + (f" (of which training {duration(runtime)})" if runtime else "")


def _choices(cfg: DictConfig, run_dir: Path) -> str:
    """The config-group choices of the run (`model=tiny reward=[format,tag_count] ...`)."""
    picked = {"model": cfg.model.name, "reward": f"[{','.join(cfg.reward)}]", "data": cfg.data.name}
    picked |= {"hardware": cfg.hardware.name, "logger": cfg.logger.name, "peft": "lora" if cfg.peft else "none"}
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        chosen = OmegaConf.load(hydra_yaml).hydra.runtime.choices
        picked |= {k: v for k, v in chosen.items() if "/" not in k and v is not None and k not in ("reward", "trainer")}
    return " ".join(f"{k}={v}" for k, v in picked.items())


def _hyperparameters(cfg: DictConfig, world_size: int, step: int) -> list[tuple[str, Any]]:
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


def _algo(cfg: DictConfig) -> dict[str, Any] | None:
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


def _rewards(cfg: DictConfig) -> list[dict[str, Any]]:
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


def _reward_faults(cfg: DictConfig, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def _tracker(cfg: DictConfig, record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
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
        "record": _tracker_record(record),  # trackio's run and database, mlflow's store (grpolab.train.trackers)
    }


def _tracker_record(record: dict[str, Any]) -> dict[str, Any]:
    """run.json's ``tracker``, with the command that opens an MLflow store."""
    tracker = dict(record.get("tracker") or {})
    uri = str(tracker.get("uri") or "")
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        tracker["ui"] = f"mlflow ui --backend-store-uri {unquote(urlparse(uri).path)}"
    elif uri:
        tracker["ui"] = f"mlflow ui --backend-store-uri {uri}"
    return tracker


def _quick_start(cfg: DictConfig, record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
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
        system = [{"role": "system", "content": cfg.data.system_prompt}] if cfg.data.system_prompt else []
        messages = [*system, {"role": "user", "content": GENERIC_QUESTION}]
    return {
        "model": json.dumps(model) if model else None,
        "checkpoint": checkpoint,
        "turns": [json.dumps(m, ensure_ascii=False) for m in messages],
        "max_new_tokens": cfg.trainer.max_completion_length,
    }


def _samples(record: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    samples = record.get("samples") or {}
    items = []
    for s in samples.get("items", []):
        prompt = next((m["content"] for m in reversed(s["prompt"]) if m.get("role") == "user"), str(s["prompt"]))
        items.append({**s, "prompt": prompt})
    return items, samples.get("step")


def _gguf_source(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
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


def _why_hardware(record: dict[str, Any]) -> list[str]:
    """Why the run got its device, when hardware=auto chose it (run.json `hardware.why`)."""
    why = (record.get("hardware") or {}).get("why")
    return [f"({why})"] if why else []


def summarize(run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Everything the card shows, from run.json, the resolved config and metrics.jsonl."""
    from grpolab.rundir.results import read_metrics

    record = runinfo.read_run(run_dir)
    history = [h for h in read_metrics(run_dir) if isinstance(h.get("reward"), int | float)]
    names = list(cfg.reward)
    beta = float(cfg.trainer.beta)
    world_size = record.get("world_size") or cfg.hardware.num_processes * cfg.hardware.num_machines
    step = record.get("global_step") or 0
    samples, samples_step = _samples(record)
    versions = record.get("versions") or {}
    git = record.get("git") or {}
    return {
        "name": record.get("name") or cfg.name or run_dir.name,
        "status": record.get("status", "running"),
        "error": record.get("error"),
        "preflight": (record.get("preflight") or {}).get("sampled"),  # the model's completions before training
        "step": step,
        "max_steps": cfg.trainer.max_steps,
        "objective": (record.get("metrics") or {}).get("objective"),
        "model": {
            "id": cfg.model.id,
            "path": cfg.model.path,
            "tiny": cfg.model.tiny is not None,
            "trust_remote_code": bool(cfg.model.trust_remote_code),
            "gguf": _gguf_source(cfg, run_dir),
        },
        "data": {**OmegaConf.to_container(cfg.data, resolve=True), "hub": _hub_dataset(cfg)},
        "seed": cfg.seed,
        "rewards": redaction.obj(_rewards(cfg)),  # a judge's api_key is a parameter too
        "reward_faults": _reward_faults(cfg, history),
        "outside_rewards": redaction.obj(outside_rewards(cfg.reward, history)),  # code, judge, remote, model
        "quick_start": _quick_start(cfg, record, run_dir),
        "choices": _choices(cfg, run_dir),
        "hyperparameters": _hyperparameters(cfg, world_size, step),
        "algo": _algo(cfg),
        "best": record.get("best"),
        "hardware": {
            "device": " ".join([cfg.hardware.accelerator, *_why_hardware(record)]),
            "world_size": world_size,
            "zero_stage": record.get("zero_stage") or cfg.hardware.zero_stage or "none (no DeepSpeed)",
            "precision": cfg.hardware.precision + (", ZeRO offload to CPU" if cfg.hardware.offload else ""),
        },
        "wall_time": _wall_time(record),
        "tracker": _tracker(cfg, record, run_dir),
        "results": results.summary_rows(history, names, beta),
        "evaluation": results.eval_summary(run_dir, read_metrics(run_dir)),
        "table": results.metric_table(history, names, beta, TABLE_ROWS) if history else None,
        "samples": samples,
        "samples_step": samples_step,
        "command": record.get("command") or "python train.py",
        "commit": f"`{git['commit']}`" if git.get("commit") else "unknown (not run from a git checkout)",
        "dirty": bool(git.get("dirty")),
        "config_yaml": (run_dir / runinfo.CONFIG_YAML).read_text().rstrip(),
        "versions": [(label, versions.get(key) or "not installed") for key, label in VERSIONS.items()],
    }


def _hub_dataset(cfg: DictConfig) -> str | None:
    """The dataset's hub id when it came from the hub (not a local copy)."""
    path = cfg.data.path
    return path if cfg.data.source == "hub" and path and not Path(path).expanduser().exists() else None


def card_data(summary: dict[str, Any], cfg: DictConfig) -> Any:
    """The card's front matter."""
    from huggingface_hub import ModelCardData

    dataset = summary["data"]["hub"]
    return ModelCardData(
        base_model=cfg.model.id or None,
        datasets=[dataset] if dataset else None,
        library_name="transformers",
        license=cfg.model.license,
        model_name=summary["name"],
        pipeline_tag="text-generation",
        tags=["generated_from_trainer", "trl", "grpo", "grpolab", *cfg.reward],
    )


def render(summary: dict[str, Any], cfg: DictConfig) -> str:
    """The card's Markdown text (front matter included)."""
    import jinja2
    from huggingface_hub import ModelCard

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=num, cell=cell, fenced=fenced, ci=ci)
    text = env.get_template("model_card.md.j2").render(card_data=card_data(summary, cfg).to_yaml(), **summary)
    return str(ModelCard(re.sub(r"\n{3,}", "\n\n", text)))


def write_card(run_dir: Path, cfg: Any = None) -> Path:
    """Render README.md (and reward.png) into ``run_dir`` and return the card's path.

    Args:
        run_dir: The run directory (holding run.json and config.yaml).
        cfg: The resolved config; read from the run directory's config.yaml when None.
    """
    run_dir = Path(run_dir)
    cfg = runinfo.load_frozen(run_dir) if cfg is None else cfg
    summary = summarize(run_dir, cfg)
    if summary["table"]:
        from grpolab.rundir.results import read_metrics

        results.reward_curves(read_metrics(run_dir), list(cfg.reward), run_dir / PLOT)
    path = run_dir / CARD
    runinfo.atomic_write(path, render(summary, cfg))
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m grpolab.rundir.card RUN_DIR...`: re-render the card of each finished (or running) run directory."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m grpolab.rundir.card RUN_DIR [RUN_DIR ...]")
        return 0 if args else 2
    for arg in args:
        run_dir = Path(arg)
        if not (run_dir / runinfo.RUN_JSON).exists() or not (run_dir / runinfo.CONFIG_YAML).exists():
            print(f"Error: {run_dir} is not a run directory (no run.json and config.yaml).", file=sys.stderr)
            return 1
        print(write_card(run_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
