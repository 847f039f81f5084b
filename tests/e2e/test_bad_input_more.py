"""More bad input (with tests/test_bad_input.py, over 30 cases): one message naming the key or file, no traceback.

Each case asserts a non-zero exit, exactly one `Error: ...` line holding the expected text (the key
or file at fault, and what to do), no Python traceback, and: for errors known before a model loads,
that no model was loaded and nothing claims success; for the others, run.json `status: failed`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO, run_train

FAULTS = REPO / "tests" / "fixtures" / "faults"
SMOKE = ["debug=smoke"]
FAKE_TOKEN = "hf_" + "Fake0Token1" * 3

# (id, overrides, texts the one error line must contain, known before any model loads)
# {no_template}, {pickled} and {no_weights} are model directories built from the tiny model (see model_dirs)
CASES: list[tuple[str, list[str], list[str], bool]] = [
    ("unknown hardware option", ["hardware=tpu"], ["hardware", "tpu"], True),
    ("unknown logger option", ["logger=neptune"], ["logger", "neptune"], True),
    ("typo in a model key", ["model.trust_remote_cod=true"], ["trust_remote_cod"], True),
    ("bool that is not", ["model.trust_remote_code=maybe"], ["trust_remote_code", "maybe"], True),
    ("int that is not", ["hardware.num_processes=two"], ["num_processes", "two"], True),
    (
        "zero batch",
        ["trainer.per_device_train_batch_size=0"],
        ["trainer.per_device_train_batch_size=0", "at least 1"],
        True,
    ),
    ("zero temperature", ["trainer.temperature=0"], ["trainer.temperature=0", "must be positive"], True),
    ("zero completion length", ["trainer.max_completion_length=0"], ["trainer.max_completion_length=0"], True),
    ("negative beta", ["trainer.beta=-0.1"], ["trainer.beta=-0.1", ">= 0"], True),
    ("nothing to train", ["trainer.max_steps=0", "trainer.num_train_epochs=0"], ["trainer.max_steps > 0"], True),
    ("zero processes", ["hardware.num_processes=0"], ["hardware.num_processes", "at least 1"], True),
    ("zero examples", ["data.max_examples=0"], ["data.max_examples=0", "at least 1"], True),
    ("unknown on_error", ["reward.format.on_error=ignore"], ["reward.format.on_error='ignore'", "'none'"], True),
    ("negative reward timeout", ["+reward.format.timeout_s=-1"], ["reward.format.timeout_s=-1.0", "null"], True),
    ("typo in a reward key", ["+reward.format.wieght=2"], ["reward.format", "wieght", "allowed keys"], True),
    ("vLLM without CUDA", ["trainer.use_vllm=true"], ["trainer.use_vllm=true", "CUDA", "runs on the CPU"], True),
    ("offload without ZeRO-3", ["hardware.offload=true"], ["hardware.offload=true", "hardware=zero3_offload"], True),
    (
        "target outside the allow-list",
        ["+reward.evil={fn: {_target_: os.system, _partial_: true}}"],
        ["reward.evil.fn._target_='os.system'", "'allowed_targets=[os]'"],
        True,
    ),
    (
        "peft target outside the allow-list",
        ["peft=lora", "peft._target_=subprocess.Popen"],
        ["peft._target_='subprocess.Popen'", "allowed_targets"],
        True,
    ),
    ("token as wandb entity", [f"logger.entity={FAKE_TOKEN}"], ["logger.entity=REDACTED", "looks like a token"], True),
    ("broken secrets pattern", ["secrets.patterns=['hf_(']"], ["secrets.patterns[0]", "regular expression"], True),
    (
        "unset environment variable",
        ["logger.entity=${oc.env:GRPOLAB_NO_SUCH_VARIABLE}"],
        ["logger.entity", "GRPOLAB_NO_SUCH_VARIABLE", "Set the environment variable"],
        True,
    ),
    (
        "accuracy without gold answers",
        ["reward=[accuracy]", "data.answer_column=null"],
        ["reward.accuracy", "data.answer_column=null", "gold answers"],
        True,
    ),
    ("push without a repo", ["push_to_hub=true"], ["push_to_hub=true", "hub.repo_id"], True),
    ("resume a non-run", ["resume=/nonexistent/run"], ["resume=/nonexistent/run", "not a run directory"], True),
    (
        "accuracy, no answer column in the data",
        ["data=jsonl", f"data.path={FAULTS / 'no_answer.jsonl'}", "reward=[accuracy]"],
        ["data.answer_column='answer'", "no_answer.jsonl", "data.answer_column=null"],
        False,
    ),
    (
        "jsonl line not an object",
        ["data=jsonl", f"data.path={FAULTS / 'array_line.jsonl'}"],
        ["array_line.jsonl", "line 2", "expected an object"],
        False,
    ),
    ("empty jsonl", ["data=jsonl", f"data.path={FAULTS / 'empty.jsonl'}"], ["empty.jsonl", "no rows"], False),
    (
        "prompt longer than the context",
        ["data=jsonl", f"data.path={FAULTS / 'long_prompt.jsonl'}"],
        ["long_prompt.jsonl' line 2", "context of 512 tokens", "trainer.max_completion_length=8", "1 of 3 prompts"],
        False,
    ),
    (
        "tokenizer without a chat template",
        ["model.path={no_template}"],
        ["no chat template", "model.chat_template"],
        False,
    ),
    (
        "pickled weights only",
        ["model.path={pickled}"],
        ["pytorch_model.bin", "safetensors only", "convert"],
        True,
    ),
    ("config without weights", ["model.path={no_weights}"], ["no weights (*.safetensors)"], True),
    # trainer values TRL refused only after the model loaded, or accepted silently (issue 17)
    ("zero max_steps", ["trainer.max_steps=0"], ["trainer.max_steps=0", "trainer.max_steps > 0"], True),
    ("zero num_iterations", ["trainer.num_iterations=0"], ["trainer.num_iterations=0", "at least 1"], True),
    ("NaN learning rate", ["trainer.learning_rate=nan"], ["trainer.learning_rate=nan", "finite"], True),
    ("negative top_k", ["trainer.top_k=-1"], ["trainer.top_k=-1", "0 disables"], True),
    ("best model without eval", ["trainer.load_best_model_at_end=true"], ["load_best_model_at_end", "eval"], True),
    (
        "checkpointing in the trainer node",
        ["trainer.activation_checkpointing=true"],
        ["trainer.activation_checkpointing", "model.gradient_checkpointing"],
        True,
    ),
    # data errors name the file, the line and the column
    (
        "byte that is not UTF-8",
        ["data=jsonl", f"data.path={FAULTS / 'latin1.jsonl'}"],
        ["latin1.jsonl: line 2, column 16: byte 0xe9 is not UTF-8"],
        False,
    ),
    (
        "column of two types",
        ["data=jsonl", f"data.path={FAULTS / 'mixed_types.jsonl'}"],
        ["mixed_types.jsonl: line 3, column 'answer' is a number where line 1 has a string"],
        False,
    ),
    (
        "null and blank prompts",
        ["data=jsonl", f"data.path={FAULTS / 'null_prompt.jsonl'}"],
        ["null_prompt.jsonl: the prompt (column 'prompt') is null or empty on line(s) 2, 4"],
        False,
    ),
    ("unreadable data file", ["data=jsonl", "data.path=/proc/self/mem"], ["/proc/self/mem cannot be read"], False),
]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Broken model directories made from the tiny model: no chat template, pickled weights, no weights."""
    import torch
    from omegaconf import OmegaConf

    from grpolab.train.models import tiny_model_dir

    tiny = OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml").model.tiny
    source = tiny_model_dir(dict(tiny), seed=42)
    root = tmp_path_factory.mktemp("models")

    no_template = root / "no_template"
    shutil.copytree(source, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))

    pickled = root / "pickled"
    shutil.copytree(source, pickled)
    from safetensors.torch import load_file

    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()

    no_weights = root / "no_weights"
    shutil.copytree(source, no_weights)
    (no_weights / "model.safetensors").unlink()
    return {"no_template": str(no_template), "pickled": str(pickled), "no_weights": str(no_weights)}


def the_message(stderr: str) -> str:
    """The one error message: grpolab's single `Error: ...` line, or Hydra's composition error block."""
    ours = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    if ours:
        assert len(ours) == 1, stderr
        return ours[0]
    assert "HYDRA_FULL_ERROR=1" in stderr, stderr  # Hydra refused the config while composing it
    return stderr


def test_there_are_at_least_30_cases_in_all() -> None:
    from test_bad_input import CASES as FIRST

    assert len(FIRST) + len(CASES) >= 30


@pytest.mark.parametrize(("overrides", "expected", "early"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_clear_message(
    overrides: list[str], expected: list[str], early: bool, model_dirs: dict[str, str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    for name, path in model_dirs.items():
        overrides = [o.replace(f"{{{name}}}", path) for o in overrides]
    start = time.monotonic()
    proc = run_train(*SMOKE, *overrides, f"hydra.run.dir={run_dir}")
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    message = the_message(proc.stderr)
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    if early:
        assert "Loading weights" not in output  # refused before any model was read
        record = run_dir / "run.json"
        assert not record.exists() or json.loads(record.read_text())["status"] != "completed"
        assert not (run_dir / "model.safetensors").exists()
        assert elapsed < 60, f"an error known from the config alone took {elapsed:.0f} s"
    else:
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "failed"
        assert record["error"] and record["error"] in message


def test_a_late_error_shows_its_traceback_with_hydra_full_error(
    model_dirs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRPOLAB_TEST_SUBPROCESS", "1")  # the traceback a real process prints
    overrides = [f"model.path={model_dirs['no_template']}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_train(*SMOKE, *overrides, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "no chat template" in proc.stderr


def test_allowed_targets_lets_a_trusted_package_in(tmp_path: Path) -> None:
    """The refusal names the fix; with it the same config passes validation (here, up to preflight=only)."""
    proc = run_train(
        *SMOKE,
        "+reward.judge={fn: {_target_: json.dumps, _partial_: true}}",
        "allowed_targets=[json]",
        "preflight=only",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    # json.dumps is no reward: now it is preflight that refuses it, naming the reward, not the allow-list
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "not allowed" not in output
    assert "'judge'" in output or "reward.judge" in output, output


def test_three_mistakes_are_reported_together(tmp_path: Path) -> None:
    """Validate once, report all: one `Error:` line heads a numbered list naming each key, nothing runs."""
    bad = ["trainer.learning_rate=nan", "trainer.top_p=0", "seed=-1"]
    proc = run_train(*SMOKE, *bad, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert the_message(proc.stderr) == "Error: 3 problems in the config; fix them all, then run again:"
    listed = [line for line in proc.stderr.splitlines() if line.startswith("  ") and "problem" not in line]
    assert [line.split(". ", 1)[0].strip() for line in listed] == ["1", "2", "3"], proc.stderr
    for key in ("seed=-1", "trainer.learning_rate=nan", "trainer.top_p=0"):
        assert sum(key in line for line in listed) == 1, (key, listed)
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize(("damaged", "text"), [("run.json", "{not json"), ("config.yaml", "model: [unclosed\n")])
def test_damaged_resume_target_names_the_file(damaged: str, text: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"status": "interrupted"}))
    (run_dir / "config.yaml").write_text("seed: 1\n")
    (run_dir / damaged).write_text(text)
    proc = run_train(*SMOKE, f"resume={run_dir}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    message = the_message(proc.stderr)
    assert str(run_dir / damaged) in message and "Restore it" in message, message
