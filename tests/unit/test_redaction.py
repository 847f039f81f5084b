"""Secrets never reach a file grpolab writes (tokens in the environment and on the command line, greped for);
the card says when a model's own code ran (trust_remote_code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, run_train
from omegaconf import OmegaConf

from grpolab import redaction

# fake, but shaped like the real thing
ENV = {
    "HF_TOKEN": "hf_FAKEfakeFAKEfake0123456789abcdEF",
    "HUGGING_FACE_HUB_TOKEN": "hf_OTHERfakeOTHERfake0123456789xyZ",
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
}
JUDGE_KEY = "sk-JUDGEjudgeJUDGEjudge0123456789"  # a token pattern, passed as a reward parameter
PASSWORD = "hunter2hunter2"  # no pattern: hidden because its key is called `password`
OVERRIDES = [
    "logger=wandb",
    "logger.mode=offline",
    "+reward.judge={fn: {_target_: grpolab.rewards.tag_count_reward, _partial_: true, "
    f"api_key: {JUDGE_KEY}, password: {PASSWORD}}}, weight: 0.5}}",
]
SECRETS = [*ENV.values(), JUDGE_KEY, PASSWORD]


def leaks(root: Path) -> list[str]:
    """Every file under ``root`` (binary ones too) holding one of the secrets, with the secret."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {s}" for s in SECRETS if s.encode() in data]
    return found


def test_redactor_hides_env_values_patterns_and_secret_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    r = redaction.Redactor.from_config({"reward": {"j": {"fn": {"api_key": "short1", "max_tokens": 512}}}})
    assert r.text(f"token {ENV['HF_TOKEN']} and {ENV['WANDB_API_KEY']}.") == "token REDACTED and REDACTED."
    assert r.text("ghp_" + "a" * 36) == "REDACTED"
    assert r.text("the key short1 leaked") == "the key REDACTED leaked"  # learnt from the config
    assert r.override("+hub.token=abc") == "+hub.token=REDACTED"
    assert r.override("trainer.max_completion_length=512") == "trainer.max_completion_length=512"
    hidden = r.obj({"fn": {"api_key": "x", "max_tokens": 512, "cache_tokens": 4}, "pad": ENV["HF_TOKEN"]})
    assert hidden == {"fn": {"api_key": "REDACTED", "max_tokens": 512, "cache_tokens": 4}, "pad": "REDACTED"}
    # config.yaml keeps a way back to a secret held in the environment
    assert r.obj({"token": ENV["HF_TOKEN"]}, env_refs=True) == {"token": "${oc.env:HF_TOKEN}"}
    assert r.text(json.dumps({"v": 'a"' + ENV["HF_TOKEN"]})) == json.dumps({"v": 'a"REDACTED'})


def test_no_key_of_the_composed_config_is_taken_for_a_secret() -> None:
    from hydra import compose, initialize_config_dir

    from grpolab.config.schemas import register

    register()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["reward=[format,tag_count,accuracy,cosine,length,repetition]"])
    container = OmegaConf.to_container(cfg, resolve=True)
    assert redaction.Redactor().obj(container) == container


def test_configured_patterns_and_env_names_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "judge-secret-value")
    r = redaction.Redactor.from_config({"secrets": {"env": ["MY_JUDGE_KEY"], "patterns": [r"corp-[0-9]{6}"]}})
    assert r.text("judge-secret-value / corp-123456 / hf_" + "x" * 30) == "REDACTED / REDACTED / hf_" + "x" * 30


@pytest.mark.slow
def test_tokens_in_env_and_overrides_never_reach_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train("debug=smoke", *OVERRIDES, f"hydra.run.dir={run_dir}", env=ENV)
    assert_ok(proc)
    assert (run_dir / "wandb").is_dir() and (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert leaks(run_dir) == []
    record = json.loads((run_dir / "run.json").read_text())
    assert "api_key: REDACTED" in record["command"]
    frozen = OmegaConf.load(run_dir / "config.yaml")
    assert frozen.reward.judge.fn.api_key == "REDACTED"
    assert "REDACTED" in (run_dir / "README.md").read_text()


@pytest.mark.slow
def test_a_sweep_keeps_them_out_of_every_job_and_the_report(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_train(
        "debug=smoke", *OVERRIDES, "seed=1,2", f"hydra.sweep.dir={sweep_dir}", env=ENV, multirun=True, timeout=900
    )
    assert_ok(proc)
    assert (sweep_dir / "README.md").is_file() and (sweep_dir / "multirun.yaml").is_file()
    assert len(list(sweep_dir.glob("*/run.json"))) == 2
    assert leaks(sweep_dir) == []
    assert not any(s in proc.stdout + proc.stderr for s in SECRETS[3:])  # what was typed is not echoed back


def test_a_token_pasted_as_the_wandb_entity_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train("debug=smoke", "logger=wandb", f"logger.entity={ENV['HF_TOKEN']}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 1
    assert "logger.entity=REDACTED looks like a token" in proc.stderr
    assert ENV["HF_TOKEN"] not in proc.stdout + proc.stderr
    assert leaks(run_dir) == []


@pytest.mark.parametrize("trust", [False, True])
def test_the_card_warns_when_remote_code_was_trusted(trust: bool, tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from grpolab.config.schemas import register
    from grpolab.rundir import runinfo
    from grpolab.rundir.card import write_card

    register()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model.trust_remote_code={str(trust).lower()}", "name=card-check"])
    runinfo.freeze_config(cfg, tmp_path)
    runinfo.update_run(tmp_path, status="completed", started_at=runinfo.now(), finished_at=runinfo.now())
    card = write_card(tmp_path, cfg).read_text()
    assert ("loaded with `trust_remote_code=true`" in card) is trust
    assert (", trust_remote_code=True)" in card) is trust  # the quick start needs it too


@pytest.mark.slow
def test_workers_of_a_multi_process_run_get_the_secret_the_files_do_not_hold(tmp_path: Path) -> None:
    """config.yaml holds REDACTED; each rank's reward still gets the real key (through its environment)."""
    import hashlib

    run_dir = tmp_path / "run"
    judge = (
        "+reward.judge={fn: {_target_: faulty_rewards.needs_key, _partial_: true, "
        f"api_key: {JUDGE_KEY}, key_sha256: {hashlib.sha256(JUDGE_KEY.encode()).hexdigest()}}}}}"
    )
    proc = run_train(
        "hardware=zero3",
        "hardware.num_processes=2",
        "debug=smoke",
        "preflight=skip",  # a constant reward: preflight would (rightly) refuse it
        judge,
        f"hydra.run.dir={run_dir}",
        env={**ENV, "PYTHONPATH": str(REPO / "tests" / "fixtures" / "faults")},
    )
    assert_ok(proc)
    assert json.loads((run_dir / "run.json").read_text())["world_size"] == 2
    assert OmegaConf.load(run_dir / "config.yaml").reward.judge.fn.api_key == "REDACTED"
    assert leaks(run_dir) == []
