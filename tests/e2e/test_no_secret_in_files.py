"""No secret reaches any file of a run, including those TRL, transformers, TensorBoard and wandb write.

Secrets are placed where users put them: ``trainer.*`` fields (a URL with a token, a key pasted into
``trainer.project``), reward parameters, the data, an experiment file, names and the environment. Then every
byte of every file under the run directory is searched for each secret's value, and so is every member of
every zip (``training_args.bin`` and other torch files are zips), gzip and parquet file.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import assert_ok, run_train

ENV = {"HF_TOKEN": "hf_ENVtokenENVtokenENV0123456789", "WANDB_API_KEY": "0123456789abcdef0123456789abcdef0badc0de"}
URL_TOKEN = "plain-url-password-77"  # the password in trainer.vllm_server_base_url: no token pattern, a URL's
PROJECT_KEY = "sk-PROJECTkeyPROJECTkey0123456789"  # pasted into trainer.project
JUDGE_KEY = "judge-key-without-a-pattern-42"  # a reward parameter, secret by its key's name
DATA_TOKEN = "hf_DATAtokenDATAtokenDATA0123456789"  # in the prompts and answers of the data
EXPERIMENT_KEY = "sk-EXPERIMENTkeyEXPERIMENT0123456"  # in a user's experiment file
NAME_TOKEN = "hf_NAMEtokenNAMEtokenNAME0123456789"  # as the run's name (refused before anything is written)
SECRETS = [*ENV.values(), URL_TOKEN, PROJECT_KEY, JUDGE_KEY, DATA_TOKEN, EXPERIMENT_KEY, NAME_TOKEN]


def members(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """``data`` and, recursively, what it holds when it is a zip, gzip or parquet file."""
    yield name, data
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                yield from members(f"{name}!{info.filename}", z.read(info))
    elif data[:2] == b"\x1f\x8b":
        yield from members(f"{name}!gunzip", gzip.decompress(data))
    elif data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        yield f"{name}!rows", json.dumps(table.to_pylist(), default=str).encode()
        yield f"{name}!schema", str(table.schema.metadata).encode()


def leaks(root: Path) -> list[str]:
    """Every file (or member of one) under ``root`` that holds a secret, with the secret."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for name, data in members(str(path.relative_to(root)), path.read_bytes()):
            found += [f"{name}: {s}" for s in SECRETS if s.encode() in data]
    return found


# -- the seams (no run needed): a transformers or TRL upgrade that changes them fails here --------------------


@pytest.fixture
def args(tmp_path: Path):
    from trl import GRPOConfig

    from grpolab import trl_seams

    plain = GRPOConfig(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        project=PROJECT_KEY,
        vllm_server_base_url=f"http://user:{URL_TOKEN}@127.0.0.1:8000",
    )
    return trl_seams.redact_args(plain)


def test_what_is_written_of_the_trainer_args_is_redacted_and_their_values_are_not(args, tmp_path: Path) -> None:
    import torch
    from trl import GRPOConfig

    assert args.project == PROJECT_KEY and URL_TOKEN in args.vllm_server_base_url  # the trainer uses the real ones
    written = [args.to_json_string(), json.dumps(args.to_dict()), str(args.to_sanitized_dict()), str(args), repr(args)]
    assert not [s for s in (PROJECT_KEY, URL_TOKEN) for text in written if s in text]
    assert args.to_dict()["project"] == "REDACTED"

    torch.save(args, tmp_path / "training_args.bin")  # what Trainer.save_model and every checkpoint do
    assert leaks(tmp_path) == []
    loaded = torch.load(tmp_path / "training_args.bin", weights_only=False)
    assert type(loaded) is GRPOConfig  # a plain GRPOConfig: loadable without grpolab
    assert loaded.project == "REDACTED" and loaded.vllm_server_base_url.startswith("http://user:REDACTED@")
    assert loaded.output_dir == args.output_dir and loaded.use_cpu

    for twin in (copy.copy(args), copy.deepcopy(args)):  # copies (wandb's callback makes one) keep real values
        assert twin.project == PROJECT_KEY and twin.to_dict()["project"] == "REDACTED"


def test_tensorboard_writes_the_args_through_the_redacted_seam(args, tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    callback.logging_dir = str(tmp_path / "tb")
    callback.on_train_begin(args, TrainerState(), TrainerControl())  # writes the JSON dump of the args
    callback.on_train_end(args, TrainerState(), TrainerControl())
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert leaks(tmp_path) == []


def test_the_other_trackers_read_the_args_through_to_dict() -> None:
    """wandb, trackio, MLflow and Comet log ``args.to_dict()``: the method `redact_args` redacts."""
    import inspect

    from transformers.integrations import integration_utils as trackers

    for name in ("WandbCallback", "TrackioCallback", "MLflowCallback", "CometCallback"):
        source = inspect.getsource(getattr(trackers, name).setup)
        assert "args.to_dict()" in source, f"transformers' {name} no longer logs args.to_dict(): see trl_seams"
        assert "asdict(args)" not in source and "vars(args)" not in source, name


def test_trl_writes_logged_completions_after_the_callbacks_on_log() -> None:
    """`SecretsGuard.on_log` redacts TRL's latest batch in place; TRL must write it only after that."""
    import inspect

    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer.log)
    assert "super().log(" in source and 'self._logs["prompt"]' in source, "GRPOTrainer.log changed: see trl_seams"
    assert source.index("super().log(") < source.index('self._logs["prompt"]'), "TRL writes completions before on_log"


def test_the_latest_batch_is_redacted_in_place() -> None:
    from collections import deque

    from grpolab import trl_seams

    logs = {
        "prompt": deque([f"q {DATA_TOKEN}", [{"role": "user", "content": DATA_TOKEN}]]),
        "completion": deque(["fine"]),
        "rewards": {},
        "extra": {"answer": deque([DATA_TOKEN, None])},
    }
    trainer = type("Trainer", (), {"_logs": logs})()
    trl_seams.redact_latest_batch(trainer)
    assert list(logs["prompt"]) == ["q REDACTED", [{"role": "user", "content": "REDACTED"}]]
    assert list(logs["completion"]) == ["fine"]
    assert list(logs["extra"]["answer"]) == ["REDACTED", None]


def test_a_reward_named_like_a_token_is_refused() -> None:
    """Reward names become TRL's metric names (trainer_state.json, event files, wandb): not for secrets."""
    from grpolab.errors import UserError
    from grpolab.rewards import wrap_reward

    with pytest.raises(UserError, match=r"reward\.REDACTED: the reward's name looks like a token") as refused:
        wrap_reward(PROJECT_KEY, len)
    assert PROJECT_KEY not in str(refused.value)


# -- whole runs ------------------------------------------------------------------------------------------------


def placements(tmp_path: Path) -> list[str]:
    """Overrides placing a secret in trainer fields, a reward parameter, the data and an experiment file."""
    data = tmp_path / "data.jsonl"
    rows = [{"prompt": f"What is {i} + 1? Ref {DATA_TOKEN}", "answer": f"{i + 1} {DATA_TOKEN}"} for i in range(16)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "leaky.yaml").write_text(
        "# @package _global_\n# a user's experiment holding a key\ntrainer:\n  hub_revision: " + EXPERIMENT_KEY + "\n"
    )
    return [
        "debug=smoke",
        "trainer.log_completions=true",  # TRL writes completions/*.parquet, the console and wandb's table
        f"trainer.vllm_server_base_url=http://user:{URL_TOKEN}@127.0.0.1:8000",
        f"trainer.project={PROJECT_KEY}",
        "+reward.judge={fn: {_target_: grpolab.rewards.tag_count_reward, _partial_: true, "
        f"api_key: {JUDGE_KEY}}}, weight: 0.5}}",
        "data=jsonl",
        f"data.path={data}",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "experiment=leaky",
    ]


@pytest.mark.slow
def test_no_secret_in_any_file_of_a_tensorboard_run_and_a_wandb_run(tmp_path: Path) -> None:
    overrides = placements(tmp_path)
    loggers = {"tensorboard": ["logger=tensorboard"], "wandb": ["logger=wandb", "logger.mode=offline"]}
    with ThreadPoolExecutor(len(loggers)) as pool:
        procs = {
            name: pool.submit(
                run_train, *overrides, *extra, f"hydra.run.dir={tmp_path / name}", env=ENV, subprocess_only=True
            )  # real processes: nothing this test process learnt about secrets helps them
            for name, extra in loggers.items()
        }
        refused = run_train("debug=smoke", f"name=run-{NAME_TOKEN}", f"hydra.run.dir={tmp_path / 'named'}", env=ENV)
    for proc in procs.values():
        assert_ok(proc.result())
        assert not [s for s in SECRETS if s in proc.result().stdout + proc.result().stderr]
    assert refused.returncode == 1 and "name=run-REDACTED looks like a token" in refused.stderr

    tb, wb = tmp_path / "tensorboard", tmp_path / "wandb"
    for run_dir in (tb, wb):  # the files where secrets were found before are there to be searched
        for name in ("training_args.bin", "checkpoint-2/training_args.bin", "checkpoint-2/trainer_state.json"):
            assert (run_dir / name).is_file(), name
        assert list(run_dir.glob("rollouts/*.parquet")) and list(run_dir.glob("completions/*.parquet"))
    assert list(tb.glob("tensorboard/events.out.tfevents.*"))
    assert list(wb.glob("wandb/offline-run-*/run-*.wandb")) and list(wb.glob("wandb/offline-run-*/logs/debug.log"))
    assert [leak for run_dir in (tb, wb, tmp_path / "named") for leak in leaks(run_dir)] == []

    import torch

    saved = torch.load(tb / "training_args.bin", weights_only=False)  # the fields reached TRL, redacted
    assert (saved.project, saved.hub_revision) == ("REDACTED", "REDACTED")
    assert saved.vllm_server_base_url == "http://user:REDACTED@127.0.0.1:8000"
    archive = dict(members("part", next(tb.glob("rollouts/*.parquet")).read_bytes()))
    assert b"Ref REDACTED" in archive["part!rows"]  # the data's token, replaced in the archive
