"""model.gguf=: bad files get one message naming the file and what was expected, before any dequantizing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_train
from omegaconf import OmegaConf

from grpolab.errors import UserError
from grpolab.train import gguf

gguf_pkg = pytest.importorskip("gguf", reason="the `gguf` package (extra `realmodel`, `make setup`) writes the files")
GEMMA = OmegaConf.load(REPO / "conf" / "model" / "gemma-3-270m.yaml").model


def write_gguf(path: Path, arch: str, hidden: int, layers: int, vocab: int) -> Path:
    """A header-only GGUF (one tiny tensor) stating an architecture and its sizes."""
    import numpy as np

    writer = gguf_pkg.GGUFWriter(str(path), arch)
    writer.add_block_count(layers)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(4 * hidden)
    writer.add_head_count(4)
    writer.add_head_count_kv(1)
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.add_file_type(15)
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def model_cfg(file: Path | str) -> object:
    cfg = OmegaConf.create(OmegaConf.to_container(GEMMA))
    cfg.gguf = str(file)
    return cfg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"model.gguf=.*nope.gguf.*no such file"):
        gguf.converted_dir(model_cfg(tmp_path / "nope.gguf"))


def test_not_a_gguf_file(tmp_path: Path) -> None:
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"PK\x03\x04 not gguf at all" * 10)
    with pytest.raises(UserError, match=r"weights.gguf: not a readable GGUF file.*Expected a .gguf model file"):
        gguf.converted_dir(model_cfg(fake))


def test_architecture_transformers_cannot_dequantize(tmp_path: Path) -> None:
    file = write_gguf(tmp_path / "rwkv.gguf", "rwkv6", hidden=64, layers=2, vocab=8)
    with pytest.raises(UserError, match=r"rwkv.gguf: transformers cannot dequantize GGUF architecture 'rwkv6'"):
        gguf.converted_dir(model_cfg(file))


def test_qwen_file_under_model_gemma(tmp_path: Path) -> None:
    file = write_gguf(tmp_path / "qwen3-4b.gguf", "qwen3", hidden=2560, layers=36, vocab=16)
    with pytest.raises(UserError) as e:
        gguf.converted_dir(model_cfg(file))
    message = str(e.value)
    assert "qwen3-4b.gguf holds a different model than model=gemma-3-270m" in message
    assert "model_type qwen3 (model=gemma-3-270m has gemma3_text)" in message
    assert "hidden_size 2560 (model=gemma-3-270m has 640)" in message


def test_same_family_other_size_is_refused(tmp_path: Path) -> None:
    file = write_gguf(tmp_path / "gemma-3-1b.gguf", "gemma3", hidden=1152, layers=26, vocab=16)
    with pytest.raises(UserError, match=r"num_hidden_layers 26 \(model=gemma-3-270m has 18\)"):
        gguf.converted_dir(model_cfg(file))


def test_packaged_needs_a_packaged_option() -> None:
    cfg = model_cfg("packaged")
    cfg.packaged_gguf = None
    with pytest.raises(UserError, match=r"model.gguf=packaged: model=gemma-3-270m names no packaged GGUF"):
        gguf.converted_dir(cfg)


def test_header_names_the_quantization(tmp_path: Path) -> None:
    file = write_gguf(tmp_path / "g.gguf", "gemma3", hidden=640, layers=18, vocab=16)
    assert gguf.describe(file, gguf.read_header(file)) == {
        "file": "g.gguf",
        "architecture": "gemma3",
        "name": None,
        "quantization": "MOSTLY_Q4_K_M",
    }


def test_the_command_line_names_the_file(tmp_path: Path) -> None:
    proc = run_train("model=gemma", "model.gguf=/nonexistent/gemma.gguf", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "model.gguf='/nonexistent/gemma.gguf': no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
