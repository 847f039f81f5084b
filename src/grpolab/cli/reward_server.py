"""Serve any grpolab reward option over HTTP, so that an expensive reward runs on another machine.

    grpolab serve-reward code --port 8765                       # the sandboxed code reward
    grpolab serve-reward judge reward.judge.fn.base_url=http://gpu-box:8000/v1
    grpolab serve-reward code --host 0.0.0.0 --token-env REWARD_TOKEN  # clients must send it
    python -m grpolab.cli.reward_server code --port 8765              # the same, without the console script

The option is composed from ``conf/reward/<option>.yaml`` with any overrides, exactly as a run
would compose it, and built once. The protocol (`grpolab.rewards.remote` is its client):

- ``POST /score`` with ``{"completions": [...], "prompts": [...], "columns": {"tests": [...], ...},
  "reward": "<name>"}`` (``reward`` only when the option holds several) answers
  ``{"scores": [float | null, ...]}``, one per completion; a bad request gets HTTP 400, a reward
  that raised HTTP 500, each with ``{"error": "..."}``.
- ``GET /health`` answers ``{"status": "ok", "rewards": [...]}``.

It listens on loopback unless told otherwise; with ``--token-env`` every request must carry
``Authorization: Bearer <that variable's value>``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from grpolab.errors import UserError

CONF = Path(__file__).resolve().parents[3] / "conf"
MAX_BODY = 256 * 1024 * 1024
log = logging.getLogger("grpolab.cli.reward_server")


class BadRequest(ValueError):
    """The request is malformed (HTTP 400)."""


def build_rewards(option: str, overrides: list[str], config_dir: Path = CONF) -> dict[str, Any]:
    """The rewards of ``reward=[option]`` (plus overrides) by name, built as a run builds them."""
    from hydra import compose, initialize_config_dir

    from grpolab.config.schemas import register
    from grpolab.rewards import build

    register()
    if not (config_dir / "reward" / f"{option}.yaml").is_file():
        names = sorted(p.stem for p in (config_dir / "reward").glob("*.yaml"))
        raise UserError(f"no reward option {option!r} in {config_dir / 'reward'}; choose one of {names}.")
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"reward=[{option}]", *overrides])
    funcs, _ = build(cfg.reward)
    return {f.__name__: f for f in funcs}


def score(rewards: dict[str, Any], request: dict[str, Any]) -> list[float | None]:
    """Score one request with the named (or only) reward.

    Raises:
        BadRequest: the request is malformed (HTTP 400).
    """
    from grpolab.rewards import check_scores, is_async

    completions = request.get("completions")
    if not isinstance(completions, list):
        raise BadRequest("'completions' must be a list")
    name = request.get("reward") or (next(iter(rewards)) if len(rewards) == 1 else None)
    if name not in rewards:
        raise BadRequest(f"name the reward: one of {list(rewards)} (got {name!r})")
    columns = request.get("columns") or {}
    if not isinstance(columns, dict) or {"completions", "prompts"} & set(columns):
        raise BadRequest("'columns' must map dataset column names to lists")
    prompts = request.get("prompts")
    reward = rewards[name]
    kwargs = {**columns, "prompts": prompts} if prompts is not None else dict(columns)
    result = reward(completions=completions, **kwargs)
    if is_async(reward):
        result = asyncio.run(result)
    return check_scores(name, result, len(completions))


class Handler(BaseHTTPRequestHandler):
    """``POST /score`` and ``GET /health`` for the server's rewards."""

    server_version = "grpolab-reward/1"

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        token = getattr(self.server, "token", None)
        if not token:
            return True
        return hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}")

    def do_GET(self) -> None:
        """Health: the rewards served."""
        if self.path.rstrip("/") != "/health":
            self._send(404, {"error": "GET /health or POST /score"})
            return
        self._send(200, {"status": "ok", "rewards": list(getattr(self.server, "rewards", {}))})

    def do_POST(self) -> None:
        """Score a batch."""
        if self.path.rstrip("/") != "/score":
            self._send(404, {"error": "POST /score"})
            return
        if not self._authorized():
            self._send(401, {"error": "missing or wrong Authorization bearer token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": f"a batch over {MAX_BODY} bytes; send smaller batches"})
            return
        try:
            request = json.loads(self.rfile.read(length))
            if not isinstance(request, dict):
                raise BadRequest("the body must be a JSON object")
            scores = score(self.server.rewards, request)  # type: ignore[attr-defined]
        except (BadRequest, json.JSONDecodeError) as e:
            self._send(400, {"error": str(e)[:2000]})
            return
        except Exception as e:  # the reward's own failure: the client applies its on_error
            log.exception("reward failed")
            self._send(500, {"error": f"{type(e).__name__}: {str(e)[:2000]}"})
            return
        self._send(200, {"scores": scores})

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the module's logger, not stderr."""
        log.debug(format, *args)


def make_server(rewards: dict[str, Any], host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> Any:
    """A threading HTTP server for ``rewards`` (not yet serving: call ``serve_forever``)."""
    server: Any = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.rewards, server.token = rewards, token
    return server


def main(argv: list[str] | None = None) -> int:
    """Serve a reward option until interrupted; returns the exit status."""
    parser = argparse.ArgumentParser(prog="grpolab serve-reward", description=__doc__.split("\n\n")[0])
    parser.add_argument("option", help="a reward option: conf/reward/<option>.yaml (code, judge, ...)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. reward.code.fn.timeout_s=3")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token-env", default=None, help="require 'Authorization: Bearer $THIS_VARIABLE'")
    parser.add_argument("--config-dir", type=Path, default=CONF, help="the conf/ directory to compose from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    token = None
    try:
        if args.token_env:
            token = os.environ.get(args.token_env)
            if not token:
                raise UserError(f"--token-env {args.token_env}: that environment variable is not set.")
        rewards = build_rewards(args.option, args.overrides, args.config_dir)
        server = make_server(rewards, args.host, args.port, token)
    except (UserError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    log.info("serving %s on http://%s:%d (POST /score, GET /health)", list(rewards), args.host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
