"""Memory plan: size a run per GPU from the model's architecture alone, then stop (`plan=true`).

    python train.py model=qwen3-4b hardware=zero3 hardware.num_processes=8 plan=true
    python train.py model=gemma hardware=single_gpu hardware.gpu_memory_gb=24 plan=true

The model is built on the meta device from `model.path`'s config.json, `model.tiny`, or the public
config.json fields in `model.architecture`: no weights are read, nothing is downloaded and no GPU is
needed. Figures are GiB per GPU; plan.json in the run directory holds them all.

Accounting, for P parameters and N GPUs:

* DeepSpeed ZeRO: 16-bit weights and gradients (2 + 2 bytes) and AdamW's fp32 master weights and two
  moments (12 bytes), each divided by N once the stage partitions it (1: optimizer, 2: + gradients,
  3: + weights). ZeRO-3 also holds its largest layer gathered (16-bit weights + gradients, DeepSpeed's
  own 4 bytes per parameter). With offload the states live in CPU memory.
* Without DeepSpeed the model trains in the dtype it is loaded in, and torch's AdamW keeps its two
  moments in that dtype (no fp32 master copy).
* A training step adds activations and logits; generation adds the KV cache and, under ZeRO-3, the
  weights gathered whole (TRL's `ds3_gather_for_generation`). The phases take turns, so the peak is the
  resident states plus the larger phase.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from grpolab.checks.arch import Arch, meta_arch
from grpolab.checks.prompt_tokens import PROMPT_TOKENS, prompt_tokens
from grpolab.files import atomic_write

GIB = 2**30
USABLE = 0.9  # share of GPU memory a plan may fill; the rest: CUDA context, NCCL buffers, fragmentation


@dataclass(frozen=True)
class Setup:
    """The run's shape as the hardware and trainer options give it; suggestions vary it."""

    world: int
    machines: int
    zero_stage: int | None
    offload: bool
    weight_bytes: int
    act_bytes: int
    batch: int  # completions per device per micro-step
    gen_batch: int  # completions each device generates at once
    prompt: int
    completion: int
    checkpointing: bool
    reference: bool
    eager: bool
    gather_for_generation: bool
    lora: bool  # adapters train: their gradients and optimizer states are too small to count


def assume_hardware(hw: DictConfig) -> None:
    """Resolve `auto` for planning without probing this machine: `auto` means GPUs, then bf16 on GPUs."""
    if hw.accelerator == "auto":
        hw.accelerator = "cuda"
    if hw.precision == "auto":
        hw.precision = "bf16" if hw.accelerator == "cuda" else "fp32"


def setup_of(cfg: DictConfig, prompt: int = PROMPT_TOKENS) -> Setup:
    """The `Setup` a composed (and hardware-resolved) config describes, for prompts of ``prompt`` tokens."""
    hw, t, m = cfg.hardware, cfg.trainer, cfg.model
    world = hw.num_processes * hw.num_machines
    cuda = hw.accelerator == "cuda"
    weight_bytes = (2 if cuda else 4) if m.dtype == "auto" else (4 if m.dtype == "float32" else 2)
    steps = t.steps_per_generation or t.gradient_accumulation_steps
    per_device = t.per_device_train_batch_size
    return Setup(
        world=world,
        machines=hw.num_machines,
        zero_stage=hw.zero_stage or None,
        offload=bool(hw.offload),
        weight_bytes=weight_bytes,
        act_bytes=2 if hw.precision in ("bf16", "fp16") or weight_bytes == 2 else 4,
        batch=per_device,
        gen_batch=t.generation_batch_size // world if t.generation_batch_size else per_device * steps,
        prompt=prompt,
        completion=t.max_completion_length or 512,
        checkpointing=bool(m.gradient_checkpointing),
        reference=t.beta > 0 and not cfg.peft,  # with peft the reference is the base with adapters off
        eager=m.attn_implementation == "eager",
        gather_for_generation=bool(t.ds3_gather_for_generation),
        lora=bool(cfg.peft),
    )


def activations(a: Arch, s: Setup, checkpointing: bool) -> float:
    """Bytes of activations kept for backward in one micro-step.

    Per token and layer a decoder layer saves the inputs of its norms and linear layers: (norms + 2) x hidden
    (norm inputs, and the outputs feeding the projections), 4 x q_dim (query before/after norm+rope, attention
    output, o_proj input), 3 x kv_dim and 4 x intermediate (gate, up, activation, product). Eager attention also
    keeps the heads x sequence softmax (fp32, plus a 16-bit copy). With gradient checkpointing only each layer's
    input stays, plus one layer recomputed in full during backward.
    """
    seq = s.prompt + s.completion
    tokens = s.batch * seq
    elems = (a.norms_per_layer + 2) * a.hidden + 4 * a.q_dim + 3 * a.kv_dim + 4 * a.intermediate
    layer = tokens * (elems * s.act_bytes + (a.heads * seq * (4 + s.act_bytes) if s.eager else 0))
    return a.layers * tokens * a.hidden * s.act_bytes + layer if checkpointing else a.layers * layer


def estimate(a: Arch, s: Setup) -> dict[str, float]:
    """Bytes per GPU of each item, and the peak (resident states + the larger of step and generation)."""
    stage = s.zero_stage or 0
    gpu, trained = (0 if s.offload else 1), (0 if s.lora else 1)
    weights = gpu * a.params * s.weight_bytes / (s.world if stage == 3 else 1)
    seq = s.prompt + s.completion
    items = {
        "weights": weights,
        "gradients": gpu * trained * a.params * s.weight_bytes / (s.world if stage >= 2 else 1),
        "optimizer": gpu * trained * a.params * (12 if stage else 2 * s.weight_bytes) / (s.world if stage else 1),
        "reference_model": weights if s.reference else 0.0,
        "zero3_gathered_layer": 2 * s.weight_bytes * a.largest_layer if stage == 3 else 0.0,
        "logits": s.batch * seq * a.vocab * 4.0,  # upper bound: fp32 over the whole sequence
        "activations": activations(a, s, s.checkpointing),
        "generation_gathered_weights": a.params * s.weight_bytes - weights
        if stage == 3 and s.gather_for_generation
        else 0.0,
        "kv_cache": 2.0 * s.gen_batch * sum(min(seq, w or seq) for w in a.kv_windows) * a.kv_dim * s.act_bytes,
    }
    resident = items["weights"] + items["gradients"] + items["optimizer"] + items["reference_model"]
    step = items["zero3_gathered_layer"] + items["logits"] + items["activations"]
    generation = items["generation_gathered_weights"] + items["kv_cache"]
    return items | {"states": resident - items["reference_model"], "peak": resident + max(step, generation)}


def suggestions(a: Arch, s: Setup, cfg: DictConfig, budget: float) -> list[dict[str, Any]]:
    """Single changes that bring the peak under ``budget`` bytes, most preferable first (or one combination)."""
    t, m = cfg.trainer, cfg.hardware.num_machines
    procs = [f"hardware.num_processes={s.world // m}"] if s.world // m > 1 else []
    nodes = [f"hardware.num_machines={m}"] if m > 1 else []
    cands: list[tuple[list[str], Setup]] = []
    if not s.checkpointing:
        cands.append((["model.gradient_checkpointing=true"], replace(s, checkpointing=True)))
    prefix = "trainer.per_device_train_batch_size"
    for b in (d for d in range(s.batch - 1, 0, -1) if s.batch % d == 0):
        more = [f"trainer.gradient_accumulation_steps={t.gradient_accumulation_steps * s.batch // b}"]
        if t.steps_per_generation:
            more.append(f"trainer.steps_per_generation={t.steps_per_generation * s.batch // b}")
        if estimate(a, replace(s, batch=b))["peak"] <= budget:
            cands.append(([f"{prefix}={b}", *more], replace(s, batch=b)))
            break
    steps = t.steps_per_generation or t.gradient_accumulation_steps
    for n in (2, 4, 8):  # more GPUs sharing ZeRO-3 states, keeping whole groups of num_generations
        grows = n * m > s.world or (s.zero_stage != 3 and n * m >= s.world)
        if grows and (t.generation_batch_size or s.batch * n * m * steps) % t.num_generations == 0:
            gen = t.generation_batch_size // (n * m) if t.generation_batch_size else s.gen_batch
            zero3 = replace(s, zero_stage=3, offload=False, world=n * m, gen_batch=gen)
            cands.append((["hardware=zero3", f"hardware.num_processes={n}", *nodes], zero3))
    if not s.offload:
        cands.append((["hardware=zero3_offload", *procs, *nodes], replace(s, zero_stage=3, offload=True)))
    if s.completion > 64:
        half = s.completion // 2
        cands.append(([f"trainer.max_completion_length={half}"], replace(s, completion=half)))
    fits = [c for c in cands if estimate(a, c[1])["peak"] <= budget]
    if not fits:  # no single change is enough: all of them together, whether or not that fits
        ga = f"trainer.gradient_accumulation_steps={t.gradient_accumulation_steps * s.batch}"
        combo = [*([] if s.checkpointing else ["model.gradient_checkpointing=true"]), f"{prefix}=1", ga]
        every = replace(s, checkpointing=True, batch=1, zero_stage=3, offload=True)
        fits = [([*combo, "hardware=zero3_offload", *procs, *nodes], every)]
    peaks = [(o, estimate(a, v)["peak"]) for o, v in fits[:3]]
    return [{"overrides": o, "peak_gb": round(p / GIB, 2), "fits": p <= budget} for o, p in peaks]


def build_plan(cfg: DictConfig, a: Arch) -> dict[str, Any]:
    """The plan.json record: parameters, per-GPU GiB of every item, the verdict and what to change."""
    prompt, prompt_from = prompt_tokens(cfg)
    s, hw = setup_of(cfg, prompt), cfg.hardware
    est = estimate(a, s)
    gpu = hw.accelerator == "cuda"
    budget = hw.gpu_memory_gb * GIB * USABLE
    fits = est["peak"] <= budget if gpu else None
    offloaded = a.params * (s.weight_bytes + (0 if s.lora else s.weight_bytes + 12))  # weights, grads, AdamW
    return {
        "model": cfg.model.name,
        "parameters": a.params,
        "largest_layer_parameters": a.largest_layer,
        "hardware": {
            **{k: hw[k] for k in ("name", "accelerator", "num_processes", "num_machines", "zero_stage", "offload")},
            **{"precision": hw.precision, "world_size": s.world, "gpu_memory_gb": hw.gpu_memory_gb},
        },
        "assumptions": asdict(s) | {"prompt_tokens_from": prompt_from, "usable_share": USABLE},
        "per_gpu_gb": {k: round(v / GIB, 3) for k, v in est.items()},
        "activations_gb": {k: round(activations(a, s, k == "with") / GIB, 3) for k in ("with", "without")},
        "cpu_offload_gb_per_machine": round(offloaded / s.machines / GIB, 2) if s.offload else 0.0,
        "fits": fits,
        "suggestions": suggestions(a, s, cfg, budget) if fits is False else [],
    }


def table(plan: dict[str, Any]) -> str:
    """A readable per-GPU table of ``plan``."""
    hw, g, s, act = plan["hardware"], plan["per_gpu_gb"], plan["assumptions"], plan["activations_gb"]
    stage, w = hw["zero_stage"] or 0, s["world"]
    part = [f", 1/{w}" if w > 1 and stage >= k else "" for k in (3, 2, 1)]  # weights, gradients, optimizer
    dtype = "fp32" if s["weight_bytes"] == 4 else "16-bit"
    where = " on CPU" if hw["offload"] else ""
    lora = " (LoRA: adapters only)" if s["lora"] else ""
    opt = "fp32 master + 2 moments" if stage else f"2 moments, {dtype}"
    unit = "GPU" if plan["fits"] is not None else "process (CPU option: host memory)"
    rows = [
        (f"weights ({dtype}{part[0]}){where}", g["weights"]),
        (f"gradients ({dtype}{part[1]}){where}{lora}", g["gradients"]),
        (f"optimizer (AdamW {opt}{part[2]}){where}{lora}", g["optimizer"]),
        (f"reference model ({'beta > 0' if s['reference'] else 'none'})", g["reference_model"]),
        ("training step:", None),
        ("  ZeRO-3 largest layer gathered", g["zero3_gathered_layer"]),
        (f"  logits ({s['batch']} x {s['prompt'] + s['completion']} tokens x vocab, fp32)", g["logits"]),
        (f"  activations (gradient checkpointing {'on' if s['checkpointing'] else 'off'})", g["activations"]),
        (f"    with / without checkpointing: {act['with']:.2f} / {act['without']:.2f} GiB", None),
        ("generation:", None),
        ("  weights gathered for generation (ZeRO-3)", g["generation_gathered_weights"]),
        (f"  KV cache ({s['gen_batch']} sequences)", g["kv_cache"]),
        (f"peak per {unit}", g["peak"]),
    ]
    width = max(len(label) for label, _ in rows)
    source = plan["assumptions"].get("prompt_tokens_from", "assumed")
    assumed = {"assumed": " (assumed)", "measured": " (longest, measured)"}.get(source, f" ({source})")
    n = plan["parameters"]
    count = f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"
    lines = [
        f"Memory plan: {plan['model']}, {count} parameters, {hw['name']} x {w}, {hw['precision']}",
        f"  {s['prompt']} prompt tokens{assumed} + {s['completion']} completion tokens, {s['batch']} per device",
        *(f"  {label:<{width}} {'' if v is None else f'{v:8.2f} GiB'}".rstrip() for label, v in rows),
    ]
    if plan["cpu_offload_gb_per_machine"]:
        lines.append(f"  CPU memory for the offloaded states, per machine: {plan['cpu_offload_gb_per_machine']} GiB")
    if plan["fits"] is not None:
        verdict = "fits" if plan["fits"] else "does NOT fit"
        lines.append(f"  {verdict} on {hw['gpu_memory_gb']:g} GiB GPUs ({hw['gpu_memory_gb'] * USABLE:.0f} usable)")
    for sug in plan["suggestions"]:
        note = "" if sug["fits"] else ", still too big: a larger GPU or a smaller model"
        lines.append(f"  try: {' '.join(sug['overrides'])}  (peak {sug['peak_gb']:.2f} GiB{note})")
    return "\n".join(lines)


def write_plan(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Plan the composed run: print the table and write plan.json; loads no weights. Returns the summary."""
    plan = build_plan(cfg, meta_arch(cfg.model))
    atomic_write(run_dir / "plan.json", json.dumps(plan, indent=2) + "\n")
    print(table(plan))
    print(f"plan written to {run_dir / 'plan.json'}")
    return plan["per_gpu_gb"] | {"fits": plan["fits"]}
