"""The model reward with a tiny sequence-classification model built here: it scores, batches, and refuses pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from conftest import REPO

from grpolab.errors import UserError
from grpolab.rewards import build, model_reward
from grpolab.rewards.reward_model import load

PROMPTS = [[{"role": "user", "content": "What is 2 + 2?"}]] * 3
COMPLETIONS = ["4", "five", [{"role": "assistant", "content": "It is 4, since 2 + 2 = 4."}]]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Qwen3 sequence classifier (one label) with the tiny model's tokenizer, saved as safetensors."""
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    from grpolab.train.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=512, num_labels=1,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    target = tmp_path_factory.mktemp("rm") / "classifier"
    Qwen3ForSequenceClassification(config).save_pretrained(target)
    tok.save_pretrained(target)
    return target


def test_a_reward_model_scores_each_completion_as_trl_would(classifier: Path) -> None:
    scores = model_reward(COMPLETIONS, prompts=PROMPTS, model=str(classifier), batch_size=2)
    assert len(scores) == 3 and all(type(s) is float for s in scores)
    assert len(set(scores)) == 3, "a reward model that cannot tell these apart is dead"
    net, tok = load(str(classifier))
    text = tok.apply_chat_template([*PROMPTS[0], {"role": "assistant", "content": "4"}], tokenize=False)
    with torch.inference_mode():
        direct = net(**tok([text], return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
    assert scores[0] == pytest.approx(direct, abs=1e-5)  # batched with padding, the same score
    assert model_reward(COMPLETIONS, prompts=PROMPTS, model=str(classifier), batch_size=3) == pytest.approx(scores)


def test_the_model_option_builds_a_picklable_reward_named_model(classifier: Path) -> None:
    from hydra import compose, initialize_config_dir

    from grpolab.config.schemas import register

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["reward=[model]", f"reward.model.fn.model={classifier}"])
    (reward,), _ = build(cfg.reward)
    reward = pickle.loads(pickle.dumps(reward))
    assert reward.__name__ == "model"
    scores = reward(completions=COMPLETIONS, prompts=PROMPTS, trainer_state=None, log_metric=print)
    assert scores == pytest.approx(model_reward(COMPLETIONS, prompts=PROMPTS, model=str(classifier)))


def test_pickled_weights_are_refused(classifier: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in classifier.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(classifier / "model.safetensors"), pickled / "pytorch_model.bin")  # a pickle
    with pytest.raises(UserError, match="safetensors"):
        model_reward(["x"], model=str(pickled))
