"""Typed schemas for grpolab's own config nodes, registered in Hydra's ConfigStore.

Importing this module is cheap (dataclasses, omegaconf, hydra): the config-only path
(`python train.py --help`, `python train.py --cfg job`) never imports torch, transformers or trl.
An unknown key or a wrong type in any node fails at compose time with Hydra's message naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from grpolab.config.trainer_schema import TrainerSchema
from grpolab.redaction import DEFAULT_ENV, DEFAULT_KEYS, DEFAULT_PATTERNS


@dataclass
class TinyModelSchema:
    """Architecture of the embedded tiny Qwen3-shaped model, built locally from `seed`."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    max_position_embeddings: int = 512
    initializer_range: float = 0.2  # as conf/model/tiny.yaml: a wide init gives the random policy varied outputs


@dataclass
class ModelSchema:
    """Which model to fine-tune and how to load it."""

    name: str = MISSING  # short name, used in the run name and the card
    id: str | None = None  # hub id, e.g. google/gemma-3-270m
    path: str | None = None  # local checkpoint directory; wins over `id`
    gguf: str | None = None  # a GGUF file, dequantized once into the cache and trained like `path`; `packaged`: below
    packaged_gguf: str | None = None  # a pip package whose assemble() returns this model's GGUF (model.gguf=packaged)
    revision: str = "main"
    dtype: str = "auto"  # auto (bf16 on GPUs that have it, else fp32) | float32 | bfloat16 | float16
    attn_implementation: str | None = None  # sdpa | eager | flash_attention_2; None: transformers' choice
    license: str = "apache-2.0"  # the base model's license, written into the card
    trust_remote_code: bool = False
    chat_template: str | None = None  # a Jinja template replacing the tokenizer's own
    default_chat_template: str | None = None  # the model's own chat format, used when its tokenizer has none
    stop_tokens: list[str] = field(default_factory=list)  # generation also ends at these (besides eos)
    gradient_checkpointing: bool = False
    tiny: TinyModelSchema | None = None  # set: build the embedded tiny model instead of loading one
    architecture: dict[str, Any] | None = None  # public config.json fields, for planning offline


@dataclass
class DataSchema:
    """Where prompts (and optional gold answers) come from."""

    name: str = MISSING
    source: str = MISSING  # arithmetic | hub | jsonl | humaneval
    path: str | None = None  # hub dataset id, or a local file / directory
    subset: str | None = None  # hub config name (gsm8k: main)
    split: str = "train"
    prompt_column: str = "prompt"
    answer_column: str | None = "answer"  # None: no gold answers
    system_prompt: str | None = None
    # worked examples shown before every prompt, as user/assistant turns: [{prompt: "...", completion: "..."}]
    few_shot: list[Any] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # more columns handed to the rewards (code: tests, entry_point)
    max_examples: int | None = None  # keep the first N after shuffling with `seed`
    max_prompt_tokens: int | None = None  # longest prompt (chat template included), for plan=true; None: measured
    # evaluation prompts (grpolab.train.data.build_datasets): a JSONL file, a split of the hub dataset, or held out
    eval_path: str | None = None  # JSONL with the same columns
    eval_split: str | None = None  # hub datasets: e.g. test
    eval_size: int | None = None  # without eval_path/eval_split: hold out N prompts; with them: use the first N
    # arithmetic only
    size: int = 2000
    max_operand: int = 20
    operations: list[str] = field(default_factory=lambda: ["+", "-"])


@dataclass
class RewardSchema:
    """One reward: the function (by `_target_`) and its weight in the total."""

    fn: Any = MISSING  # {_target_: module.function, _partial_: true, ...parameters}
    weight: Any = 1.0  # a number, or a schedule: {schedule: linear, start: 1.0, end: 0.1, steps: 500}
    on_error: str = "raise"  # raise | none (score None for that completion and count it)
    timeout_s: float | None = None  # give up on a call after this many seconds (then on_error applies)


@dataclass
class EvalSchema:
    """Greedy accuracy, mean@k, maj@k and pass@k on the eval prompts (grpolab.eval.evaluate), with intervals."""

    k: int = 4  # samples per prompt for mean@k, maj@k and pass@k
    temperature: float | None = None  # None: trainer.temperature
    max_new_tokens: int | None = None  # None: trainer.max_completion_length
    batch_size: int = 64  # prompts per generate call
    correct: list[str] | None = None  # rewards that must reach `threshold`; None: [accuracy] if set, else all
    threshold: float = 1.0
    at_start: bool = True  # evaluate before the first step: the baseline the card compares with
    at_end: bool = True  # evaluate once after training (when there are eval prompts)
    samples: int = 4  # greedy completions kept in eval.json (and the card)
    bootstrap_resamples: int = 1000  # bootstrap 95% intervals over prompts; 0: none
    bootstrap_seed: int = 0  # the same prompts' verdicts give the same intervals
    source_column: str | None = "source"  # a breakdown per value of this column, when the eval prompts have it


@dataclass
class RolloutsSchema:
    """The rollout archive: rollouts/step-NNNNNN.parquet in the run directory (grpolab.rundir.rollouts)."""

    enabled: bool = True
    every_n_steps: int = 1  # archive logged steps that are multiples of this
    max_per_step: int | None = None  # keep the first N completions (whole groups first); None: all


@dataclass
class HardwareSchema:
    """Where the run executes; the world size and precision are stated here and nowhere else."""

    name: str = MISSING
    accelerator: str = "cpu"  # cpu | cuda | auto (cuda when a GPU is visible, else cpu; resolved at launch)
    num_processes: int = 1  # processes per machine
    num_machines: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (bf16 on cuda, fp32 on cpu; resolved at launch)
    zero_stage: int | None = None  # DeepSpeed ZeRO stage, None for none
    offload: bool = False  # ZeRO-3: optimizer states and parameters on the CPU
    gpu_memory_gb: float = 80.0  # for plan=true
    torch_threads: int | None = None  # CPU threads per process; None: torch's choice
    main_process_port: int | None = None  # None: a free port per run


@dataclass
class LoggerSchema:
    """Experiment tracker; `none` still writes metrics.jsonl and train.log into the run directory."""

    name: str = "none"  # none | wandb | tensorboard | trackio | mlflow
    project: str = "grpolab"
    entity: str | None = None
    mode: str = "auto"  # wandb: auto (online when a key and the network are there) | online | offline


@dataclass
class HubSchema:
    """Where `push_to_hub=true` uploads the run directory."""

    repo_id: str | None = None
    private: bool = True


@dataclass
class SecretsSchema:
    """What never reaches a file the run writes (see grpolab.redaction); extend with `secrets.env=[...]`."""

    env: list[str] = field(default_factory=lambda: list(DEFAULT_ENV))  # variables whose values are secret
    patterns: list[str] = field(default_factory=lambda: list(DEFAULT_PATTERNS))  # regexes of token-like text
    key_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_KEYS))  # regexes of secret key names


@dataclass
class DynamicSamplingSchema:
    """DAPO's dynamic sampling (grpolab.train.dynamic_sampling): train only on groups whose rewards differ."""

    enabled: bool = False
    metric: str = "reward"  # reward (the weighted total) or the name of one reward
    min_std: float = 0.0  # drop a group whose metric's std is <= this (0: only groups of equal rewards)
    max_gen_batches: int = 4  # generation rounds per step at most (1: drop without refilling)


@dataclass
class TrainerNode(TrainerSchema):
    """The trainer node: every GRPOConfig field, plus grpolab's own run-control switches."""

    save_on_interrupt: bool = True  # Ctrl-C / SIGTERM: save a checkpoint at the step boundary, then stop
    skip_empty_steps: bool = True  # no optimizer step when the gradient is exactly 0 (grpolab.train.empty_steps)
    dynamic_sampling: DynamicSamplingSchema = field(default_factory=DynamicSamplingSchema)
    # activation checkpointing is the model group's fact (model.gradient_checkpointing); these two names
    # stay only so that `trainer.<name>=` is answered with that, by grpolab.config.checks_trainer
    activation_checkpointing: Any = None
    gradient_checkpointing: Any = None


@dataclass
class AlgoSchema:
    """The GRPO variant (conf/algo/): its paper for the card; its settings are trainer keys it sets."""

    name: str | None = None
    title: str | None = None
    paper: str | None = None  # the paper's page
    bibtex: str = ""  # empty: GRPO's own citation (on every card) covers it


@dataclass
class CheckpointSchema:
    """Which checkpoints are best, kept, and which model the run directory's root holds."""

    best_metric: str | None = None  # any logged metric, e.g. eval/accuracy or reward; None: no best tracking
    direction: str = "max"  # max | min
    keep_best: int = 1  # the k best checkpoints survive save_total_limit's rotation
    root_model: str = "last"  # last | best: the model saved at the run directory's root


@dataclass
class EarlyStoppingSchema:
    """Stop when checkpoint.best_metric has not improved by min_delta for `patience` of its evaluations."""

    patience: int | None = None  # None: never stop early
    min_delta: float = 0.0


@dataclass
class TrainSchema:
    """The root of a composed run."""

    model: ModelSchema = MISSING
    # each entry is checked against RewardSchema by grpolab.config.validate (OmegaConf cannot type `+reward.x={...}`)
    reward: dict[str, Any] = field(default_factory=dict)
    data: DataSchema = MISSING
    trainer: TrainerNode = field(default_factory=TrainerNode)
    algo: AlgoSchema = field(default_factory=AlgoSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    early_stopping: EarlyStoppingSchema = field(default_factory=EarlyStoppingSchema)
    hardware: HardwareSchema = MISSING
    logger: LoggerSchema = field(default_factory=LoggerSchema)
    peft: Any = None  # {_target_: peft.LoraConfig, ...} or None
    hub: HubSchema = field(default_factory=HubSchema)
    name: str | None = None  # run / card model name; None: <model>-grpo-<rewards>
    seed: int = 42
    # what a sweep optimises and ranks by: a logged metric's mean over the last 20% of logged steps
    # (reward = total reward; rewards/format/mean; eval/accuracy, from eval.json for eval_only runs)
    objective: str = "reward"
    plan: bool = False  # print the memory plan and stop
    preflight: str = "auto"  # auto | strict (stop without learning signal) | only | skip
    resume: str | None = None  # a run directory to continue
    eval_only: bool = False  # evaluate (resume=<run_dir> or model.path=<dir>) and write eval.json; no training
    eval: EvalSchema = field(default_factory=EvalSchema)
    rollouts: RolloutsSchema = field(default_factory=RolloutsSchema)
    push_to_hub: bool = False
    verbose: bool = False  # print the per-step dicts too (train.log and metrics.jsonl always keep them)
    secrets: SecretsSchema = field(default_factory=SecretsSchema)
    # `_target_` runs code: packages allowed besides grpolab, trl, peft, transformers and those on PYTHONPATH
    allowed_targets: list[str] = field(default_factory=list)


def _shared_store(self: ConfigStore, memo: dict[int, Any]) -> ConfigStore:
    return self


def register() -> None:
    """Register the root schema as `train_schema` (used first in conf/train.yaml's defaults).

    Also lets Hydra's copies of its config repository share the one ConfigStore. Hydra deep-copies
    the repository, every stored schema with it (ours holds ~200 trainer fields), once per config
    group it lists: 107 times for `python train.py --help`. The copies only read the store (each
    load deep-copies the node it returns), so sharing it changes nothing but the time: --help
    0.95 -> 0.31 s.
    """
    ConfigStore.__deepcopy__ = _shared_store  # type: ignore[attr-defined]
    ConfigStore.instance().store(name="train_schema", node=TrainSchema)
