"""Each tracker, read back: the per-reward metrics and the config are in what it stored, and no secret is.

wandb (offline files, the same run id after a resume), tensorboard (event files), trackio (its local
database) and mlflow (a file store in the run directory). The runs go side by side: mostly start-up.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_ok, run_train

pytestmark = pytest.mark.slow  # trains tiny runs
SECRET = "hf_TrackerReadBackSecret0123456789abcdefXYZ"
SMOKE = ("debug=smoke", "preflight=skip")
REWARDS = ("rewards/format/mean", "rewards/tag_count/mean")


def no_secret_under(*roots: Path) -> None:
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a wandb ``.wandb`` file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, out, buf = path.read_bytes(), 7, 32768, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind == 2 else buf + chunk
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trackers")
    env = {"HF_TOKEN": SECRET, "WANDB_API_KEY": "", "TRACKIO_DIR": str(root / "trackio-db")}
    loggers = {
        "wandb": ["logger=wandb", "logger.mode=offline"],
        "tensorboard": ["logger=tensorboard"],
        "trackio": ["logger=trackio"],
        "mlflow": ["logger=mlflow"],
    }
    with ThreadPoolExecutor(len(loggers)) as pool:
        procs = {
            name: pool.submit(
                run_train, *SMOKE, *extra, f"hydra.run.dir={root / name}", env=env, timeout=600, subprocess_only=True
            )  # real processes: each with its own tracker environment
            for name, extra in loggers.items()
        }
        for proc in procs.values():
            assert_ok(proc.result())
    for name in ("wandb", "mlflow"):  # each goes on in the run it started
        resumed = run_train(f"resume={root / name}", "trainer.max_steps=4", env=env, subprocess_only=True)
        assert_ok(resumed)
    return {"root": root, **{name: root / name for name in loggers}}


def test_wandb_offline_files_hold_metrics_and_config_under_one_run_id(runs: dict[str, Path]) -> None:
    record = json.loads((runs["wandb"] / "run.json").read_text())
    files = sorted((runs["wandb"] / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2, files  # the first process and the resumed one
    assert {f.stem for f in files} == {f"run-{record['wandb_run_id']}"}
    steps, config = set(), {}
    for path in files:
        records = wandb_records(path)
        assert [r.run.run_id for r in records if r.WhichOneof("record_type") == "run"] == [record["wandb_run_id"]]
        for r in records:
            if r.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                if f"train/{REWARDS[0]}" in items:
                    assert f"train/{REWARDS[1]}" in items
                    steps.add(items["train/global_step"])
            if r.WhichOneof("record_type") == "config":
                config |= {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.config.update}
    assert steps == {1, 2, 3, 4}  # the resumed process went on logging into the same run
    assert config["learning_rate"] == 3e-3 and config["num_generations"] == 2
    assert config["grpolab"]["reward"]["format"]["weight"] == 1.0, "grpolab's own config, beside TRL's arguments"
    assert config["grpolab"]["model"]["name"] == "tiny" and "hardware" in config["grpolab"]
    assert record["tracker"]["name"] == "wandb"
    no_secret_under(runs["wandb"] / "wandb")


def test_tensorboard_events_hold_metrics_and_config(runs: dict[str, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["tensorboard"] / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    tags = events.Tags()
    for key in REWARDS:
        assert [s.step for s in events.Scalars(f"train/{key}")] == [1, 2]
    args = [t for t in tags["tensors"] if t.startswith("args")]
    text = events.Tensors(args[0])[0].tensor_proto.string_val[0].decode()
    assert '"learning_rate": 0.003' in text and '"num_generations": 2' in text
    no_secret_under(runs["tensorboard"] / "tensorboard")


def test_trackio_database_holds_metrics_and_config(runs: dict[str, Path]) -> None:
    record = json.loads((runs["trackio"] / "run.json").read_text())
    tracker = record["tracker"]
    assert tracker["name"] == "trackio" and "space" not in tracker  # local only
    db = Path(tracker["dir"]) / f"{tracker['project']}.db"
    assert db.parent == runs["root"] / "trackio-db"
    with sqlite3.connect(db) as con:
        rows = con.execute("select run_name, step, metrics from metrics").fetchall()
        configs = con.execute("select run_name, config from configs").fetchall()
    logged = [(step, json.loads(m)) for name, step, m in rows if name == tracker["run"]]
    rewards = {step for step, m in logged if all(f"train/{k}" in m for k in REWARDS)}
    assert rewards == {1, 2}
    (name, config), *_ = configs
    assert name == tracker["run"] and json.loads(config)["learning_rate"] == 3e-3
    no_secret_under(db)


def test_mlflow_file_store_in_the_run_directory_holds_metrics_and_config(runs: dict[str, Path]) -> None:
    tracker = json.loads((runs["mlflow"] / "run.json").read_text())["tracker"]
    store = runs["mlflow"] / "mlruns"
    assert tracker["uri"] == store.resolve().as_uri()
    (run,) = [p.parent for p in store.glob("*/*/meta.yaml")]  # one run: the resume went on in it
    assert run.name == tracker["run_id"]
    assert (run.parent / "meta.yaml").read_text().count(f"name: {tracker['experiment']}") == 1
    for key in REWARDS:
        lines = (run / "metrics" / key).read_text().split("\n")
        assert [int(line.split()[2]) for line in lines if line] == [1, 2, 3, 4]  # timestamp value step
    assert (run / "params" / "learning_rate").read_text() == "0.003"
    frozen = (run / "artifacts" / "grpolab" / "config.yaml").read_text()
    assert frozen == (runs["mlflow"] / "config.yaml").read_text() and "format_progress" in frozen
    no_secret_under(store)


def test_the_card_names_the_trackers_record(runs: dict[str, Path]) -> None:
    cards = {name: (runs[name] / "README.md").read_text() for name in ("wandb", "tensorboard", "trackio", "mlflow")}
    assert "wandb sync" in cards["wandb"]
    assert "tensorboard --logdir" in cards["tensorboard"]
    tracker = json.loads((runs["trackio"] / "run.json").read_text())["tracker"]
    assert f"trackio show --project {tracker['project']}" in cards["trackio"] and tracker["run"] in cards["trackio"]
    assert f"mlflow ui --backend-store-uri {runs['mlflow'] / 'mlruns'}" in cards["mlflow"]
