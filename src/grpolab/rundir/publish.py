"""Upload a finished run directory (model, tokenizer, card, plot, config) to the Hugging Face Hub.

    python train.py push_to_hub=true hub.repo_id=org/name     # uploads when training completes
    python -m grpolab.rundir.publish outputs/runs/<date>/<time> org/name [--public]   # a finished run, later

Before uploading, the card's quick start is rewritten to load the hub repo id; when the upload
fails (offline, not logged in, no access) the card goes back to the local path and one message
says why and how to retry.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from grpolab.config.schemas import HubSchema
from grpolab.errors import UserError
from grpolab.rundir import runinfo

log = logging.getLogger("grpolab")
IGNORE = ["checkpoint-*", "checkpoint-*/**", ".hydra/**", "wandb/**", ".*.tmp*", "**/.*.tmp*", ".lock", ".*.reserve"]


class PublishError(UserError):
    """The upload did not happen; the message says why and how to retry."""


def _reason(error: Exception) -> str:
    """Why an upload failed, in words a user can act on."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return "the Hugging Face Hub is switched off in this environment (HF_HUB_OFFLINE is set)"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, HfHubHTTPError) and status in (401, 403):
        return f"the hub refused the upload (HTTP {status}): log in with `hf auth login` or set HF_TOKEN"
    names = {c.__name__ for c in type(error).__mro__}
    if names & {"ConnectionError", "TransportError", "TimeoutError", "NetworkError"}:
        return f"the Hugging Face Hub is not reachable ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"


def push(run_dir: Path, repo_id: str | None, private: bool = True) -> str:
    """Upload ``run_dir`` to the model repo ``repo_id`` (created if missing); returns the repo URL.

    Args:
        run_dir: A completed run directory.
        repo_id: ``org/name`` on the Hub.
        private: Create the repo private (an existing repo keeps its visibility).

    Raises:
        PublishError: The run is not publishable or the upload failed; the card is left pointing at the run
            directory and run.json records ``hub_error``.
    """
    from huggingface_hub import HfApi

    from grpolab.rundir.card import write_card

    run_dir = Path(run_dir)
    retry = f"python -m grpolab.rundir.publish {run_dir} {repo_id}"
    if not repo_id or repo_id.count("/") != 1:
        raise PublishError(f"push_to_hub needs hub.repo_id=org/name (got {repo_id!r}).")
    record = runinfo.read_run(run_dir)
    if record.get("status") != "completed" or not (run_dir / "config.json").exists():
        raise PublishError(f"{run_dir} holds no completed run (status {record.get('status')!r}); nothing to upload.")
    runinfo.update_run(run_dir, hub_repo_id=repo_id, hub_error=None)
    write_card(run_dir)  # the quick start now loads the repo id
    try:
        api = HfApi()
        url = str(api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"))
        commit = api.upload_folder(
            folder_path=run_dir,
            repo_id=repo_id,
            repo_type="model",
            ignore_patterns=IGNORE,
            commit_message=f"grpolab run {record.get('name')} ({record.get('global_step')} steps)",
        )
    except Exception as e:
        reason = _reason(e)
        runinfo.update_run(run_dir, hub_repo_id=None, hub_error=reason)
        write_card(run_dir)
        raise PublishError(
            f"could not upload {run_dir} to https://huggingface.co/{repo_id}: {reason}. The run itself is "
            f"complete; once connected and logged in, upload it with `{retry}`."
        ) from e
    runinfo.update_run(run_dir, hub_url=url, hub_commit=getattr(commit, "oid", None), pushed_at=runinfo.now())
    log.info("uploaded %s to %s", run_dir, url)
    return url


def push_at_end(hub: HubSchema, run_dir: Path) -> str | None:
    """`push_to_hub=true` at the end of training: upload, or log one clear error and keep the run completed."""
    try:
        return push(run_dir, hub.repo_id, private=hub.private)
    except PublishError as e:
        log.error("push_to_hub: %s", e)
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m grpolab.rundir.publish RUN_DIR ORG/NAME [--public]`: upload a finished run directory."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print("usage: python -m grpolab.rundir.publish RUN_DIR ORG/NAME [--public]")
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        print(push(Path(args[0]), args[1], private="--public" not in args[2:]))
    except PublishError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
