"""Secrets never reach a file grpolab writes: one redaction, applied by every writer.

What counts as a secret is the config's top-level ``secrets`` node (`grpolab.config.schemas.SecretsSchema`):

- the value of every environment variable named in ``secrets.env`` (``HF_TOKEN``,
  ``HUGGING_FACE_HUB_TOKEN``, ``WANDB_API_KEY`` by default);
- any text matching one of ``secrets.patterns`` (regular expressions: Hugging Face ``hf_...``,
  OpenAI-style ``sk-...``, GitHub, AWS and Slack tokens, a URL's password and ``?token=``-like query
  values by default; a pattern's ``(?P<secret>...)`` group, when it has one, is all that is replaced);
- the value of any config key whose name matches one of ``secrets.key_patterns`` (``token``, ``api_key``,
  ``secret``, ``password``...), wherever it sits (``+reward.judge.fn.api_key=...``).

`configure` reads the node (and collects the values of secret-named keys) once per process; the
writers then call `text`, `obj` or `override`: run.json, config.yaml, the card and the sweep
report through `grpolab.files.atomic_write`, metrics.jsonl, every log handler through
`LogFilter`, and Hydra's own ``.hydra/*.yaml`` through `rewrite_file`. A secret is replaced by
``REDACTED``; in config.yaml a value equal to a listed environment variable's becomes
``${oc.env:NAME}`` instead, so workers and resumed runs read it back from the environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REDACTED = "REDACTED"  # also a valid YAML scalar and Hydra override value (a sweep report parses them)
DEFAULT_ENV = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"]
DEFAULT_PATTERNS = [
    r"hf_[A-Za-z0-9]{20,}",  # Hugging Face
    r"sk-[A-Za-z0-9_-]{20,}",  # OpenAI-style API keys
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
    r"://[^\s/?#@:]+:(?P<secret>[^\s/?#@]+)@",  # the password of a URL (https://user:password@host)
    r"(?i)[?&][\w.-]*(?:token|key|secret|password|passwd|signature|sig|auth)=(?P<secret>[^&#\s\"']+)",  # ?token=
]
DEFAULT_KEYS = [r"(.*[_-])?(token|api[_-]?key|apikey|secret|password|passwd|credentials?)"]
MIN_LITERAL = 6  # shorter values are redacted by key only: as free text they would match everywhere
_OVERRIDE = re.compile(r"^([+~]*)([\w.\-/@]+)=(.*)$", re.DOTALL)


@dataclass
class Redactor:
    """What to hide and how. Build one with `from_config`; the process-wide one is `current()`."""

    env: list[str] = field(default_factory=lambda: list(DEFAULT_ENV))
    patterns: list[str] = field(default_factory=lambda: list(DEFAULT_PATTERNS))
    keys: list[str] = field(default_factory=lambda: list(DEFAULT_KEYS))
    literals: set[str] = field(default_factory=set)  # values found under secret-named keys

    def __post_init__(self) -> None:
        self._patterns = [re.compile(p) for p in self.patterns]
        self._keys = [re.compile(k, re.IGNORECASE) for k in self.keys]

    def env_values(self) -> dict[str, str]:
        """Secret value -> the environment variable holding it (read now: the environment may change)."""
        return {v: name for name in self.env if len(v := os.environ.get(name, "")) >= MIN_LITERAL}

    def is_secret_key(self, key: Any) -> bool:
        """Whether a config key's last component names a secret (`hub.token`, `api_key`)."""
        last = str(key).rsplit(".", 1)[-1]
        return any(k.fullmatch(last) for k in self._keys)

    def text(self, text: str) -> str:
        """``text`` with every known secret value and every pattern match replaced by ``REDACTED``."""
        values = {*self.env_values(), *(v for v in self.literals if len(v) >= MIN_LITERAL)}
        for value in sorted(values, key=len, reverse=True):
            for form in {value, json.dumps(value)[1:-1]}:  # raw, and as it reads inside a JSON string
                text = text.replace(form, REDACTED)
        for pattern in self._patterns:
            text = pattern.sub(_hide, text)
        return text

    def override(self, item: str) -> str:
        """A ``key=value`` override with the value hidden when the key names a secret, then `text`."""
        match = _OVERRIDE.match(item)
        if match and self.is_secret_key(match.group(2)) and match.group(3) not in ("", "null"):
            item = f"{match.group(1)}{match.group(2)}={REDACTED}"
        return self.text(item)

    def obj(self, value: Any, key: Any = None, env_refs: bool = False) -> Any:
        """A copy of a JSON/YAML-like structure with secrets hidden (by key, value and pattern).

        Args:
            value: Dicts, lists and scalars (a resolved config, a run record).
            key: The key ``value`` sits under, when it is a dict entry.
            env_refs: Write ``${oc.env:NAME}`` for a value equal to a listed environment
                variable's (config.yaml), instead of ``REDACTED``.
        """
        if isinstance(value, Mapping):
            return {k: self.obj(v, k, env_refs) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.obj(v, None, env_refs) for v in value]
        if not isinstance(value, str):
            return value
        if env_refs and value in (refs := self.env_values()):
            return f"${{oc.env:{refs[value]}}}"
        if key is not None and self.is_secret_key(key) and value:
            return REDACTED
        return self.override(value)

    def collect(self, value: Any, key: Any = None) -> None:
        """Remember every string under a secret-named key of ``value``, so `text` hides it everywhere."""
        if isinstance(value, Mapping):
            for k, v in value.items():
                self.collect(v, k)
        elif isinstance(value, list | tuple):
            for v in value:
                self.collect(v, key)
        elif isinstance(value, str) and value and key is not None and self.is_secret_key(key):
            self.literals.add(value)
        elif isinstance(value, str) and (match := _OVERRIDE.match(value)) and self.is_secret_key(match.group(2)):
            self.literals.add(match.group(3))

    def withheld(self, value: Any, prefix: str = "") -> dict[str, Any]:
        """The leaves of a resolved config that `obj` hides, by dotted key (handed to workers, not written)."""
        out: dict[str, Any] = {}
        if isinstance(value, Mapping):
            for k, v in value.items():
                out |= self.withheld(v, f"{prefix}{k}.")
        elif isinstance(value, str) and self.obj(value, prefix.rstrip(".").rsplit(".", 1)[-1]) != value:
            out[prefix.rstrip(".")] = value
        return out

    @classmethod
    def from_config(cls, cfg: Any) -> Redactor:
        """The redactor for a composed (or frozen) config: its ``secrets`` node, and the secrets it holds."""
        from omegaconf import DictConfig, OmegaConf

        node = cfg.get("secrets") if isinstance(cfg, DictConfig | Mapping) else None
        settings = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
        assert isinstance(settings, dict)
        redactor = cls(
            env=list(settings.get("env") or DEFAULT_ENV),
            patterns=list(settings.get("patterns") or DEFAULT_PATTERNS),
            keys=list(settings.get("key_patterns") or DEFAULT_KEYS),
        )
        plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
        redactor.collect(plain)
        if isinstance(cfg, DictConfig):  # resolved values too (`${oc.env:...}` under a secret-named key)
            try:
                redactor.collect(OmegaConf.to_container(cfg, resolve=True))
            except Exception:  # an unresolvable interpolation is validate's to report
                pass
        return redactor


def _hide(match: re.Match[str]) -> str:
    """``REDACTED`` for a pattern's match, or for its ``secret`` group only when it has one (a URL's password)."""
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return REDACTED
    start, end = match.span("secret")
    whole = match.group(0)
    return whole[: start - match.start()] + REDACTED + whole[end - match.start() :]


_current = Redactor()


def current() -> Redactor:
    """The process-wide redactor (defaults until `configure` is called)."""
    return _current


def configure(cfg: Any) -> Redactor:
    """Make the redactor of ``cfg`` the process-wide one (each process calls it once its config is known)."""
    global _current
    redactor = Redactor.from_config(cfg)
    redactor.literals |= _current.literals  # what was learnt earlier in this process stays hidden
    _current = redactor
    return redactor


def add_literals(values: Iterable[str]) -> None:
    """Hide these values too (e.g. a worker's withheld config values)."""
    _current.literals.update(v for v in values if isinstance(v, str) and v)


def text(value: str) -> str:
    """`Redactor.text` with the process-wide redactor."""
    return _current.text(value)


def obj(value: Any, env_refs: bool = False) -> Any:
    """`Redactor.obj` with the process-wide redactor."""
    return _current.obj(value, env_refs=env_refs)


def override(item: str) -> str:
    """`Redactor.override` with the process-wide redactor."""
    return _current.override(item)


def check_patterns(patterns: Iterable[str], where: str = "secrets.patterns") -> None:
    """Raise `UserError` naming the first entry that is not a valid regular expression."""
    from grpolab.errors import UserError

    for i, pattern in enumerate(patterns):
        try:
            re.compile(str(pattern))
        except re.error as e:
            raise UserError(
                f"{where}[{i}]={pattern!r} is not a valid regular expression ({e}). Escape it, e.g. with \\."
            ) from e


class LogFilter(logging.Filter):
    """Redacts every record a handler emits (message, arguments and exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted text; never drops a record."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = _current.text(message), None
        if record.exc_text:
            record.exc_text = _current.text(record.exc_text)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add one `LogFilter` to every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, LogFilter) for f in handler.filters):
            handler.addFilter(LogFilter())


def rewrite_file(path: Path) -> None:
    """Redact a text file in place (Hydra's ``.hydra/*.yaml``, a sweep's ``multirun.yaml``)."""
    path = Path(path)
    if not path.is_file():
        return
    original = path.read_text(encoding="utf-8")
    redacted = _current.text(original)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:  # libyaml's parser when present: the same data, ~8x faster than the pure-Python one
            data = yaml.load(original, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            data = None
        hidden = _current.obj(data)
        if data is not None and hidden != data:  # by key too (a short value under `api_key`)
            redacted = yaml.safe_dump(hidden, sort_keys=False, allow_unicode=True)
    if redacted != original:
        from grpolab.files import atomic_write

        atomic_write(path, redacted, redact=False)
