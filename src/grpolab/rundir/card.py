"""The model card (README.md) of a run directory, rendered from run.json, config.yaml and metrics.jsonl.

    python -m grpolab.rundir.card outputs/runs/<date>/<time>     # re-render README.md and reward.png

One summary (:func:`summarize`) feeds one template (``templates/model_card.md.j2``); the front
matter goes through ``huggingface_hub.ModelCardData``, so the result is a valid Hub card. The card
is written at the start of a run, after every checkpoint, at the end and when the run fails.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grpolab import redaction
from grpolab.files import atomic_write
from grpolab.rewards.kinds import outside_rewards
from grpolab.rundir import card_facts as facts
from grpolab.rundir import results, runinfo
from grpolab.rundir.markdown import cell, ci, fenced, num

CARD = "README.md"
PLOT = "reward.png"
TEMPLATES = Path(__file__).parent / "templates"
VERSIONS = {"trl": "TRL", "transformers": "Transformers", "torch": "PyTorch", "datasets": "Datasets"}
VERSIONS |= {"tokenizers": "Tokenizers", "accelerate": "Accelerate", "deepspeed": "DeepSpeed", "hydra-core": "Hydra"}
TABLE_ROWS = 20


def summarize(run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """Everything the card shows, from run.json, the resolved config and metrics.jsonl."""
    from grpolab.rundir.results import read_metrics

    record = runinfo.read_run(run_dir)
    history = [h for h in read_metrics(run_dir) if isinstance(h.get("reward"), int | float)]
    names = list(cfg.reward)
    beta = float(cfg.trainer.beta)
    world_size = record.get("world_size") or cfg.hardware.num_processes * cfg.hardware.num_machines
    step = record.get("global_step") or 0
    samples, samples_step = facts.samples(record)
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
            "gguf": facts.gguf_source(cfg, run_dir),
        },
        "data": {**OmegaConf.to_container(cfg.data, resolve=True), "hub": _hub_dataset(cfg)},
        "seed": cfg.seed,
        "rewards": redaction.obj(facts.rewards(cfg)),  # a judge's api_key is a parameter too
        "reward_faults": facts.reward_faults(cfg, history),
        "outside_rewards": redaction.obj(outside_rewards(cfg.reward, history)),  # code, judge, remote, model
        "quick_start": facts.quick_start(cfg, record, run_dir),
        "choices": facts.choices(cfg, run_dir),
        "hyperparameters": facts.hyperparameters(cfg, world_size, step),
        "algo": facts.algo(cfg),
        "best": record.get("best"),
        "hardware": {
            "device": " ".join([cfg.hardware.accelerator, *facts.why_hardware(record)]),
            "world_size": world_size,
            "zero_stage": record.get("zero_stage") or cfg.hardware.zero_stage or "none (no DeepSpeed)",
            "precision": cfg.hardware.precision + (", ZeRO offload to CPU" if cfg.hardware.offload else ""),
        },
        "wall_time": facts.wall_time(record),
        "tracker": facts.tracker(cfg, record, run_dir),
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
    atomic_write(path, render(summary, cfg))
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
