"""`push_folder`: publish an output directory, with its model card, to the Hugging Face Hub.

Goes through `huggingface_hub` (whoami, `create_repo(exist_ok=True)`, `create_branch`, `upload_folder`), so the
endpoint comes from `HF_ENDPOINT` and the token from the argument, `HF_TOKEN` or `hf auth login`. Every failure
becomes one `HfcompressError` sentence that never contains the token, and leaves the local folder as it was:
the card is refreshed for the repo id before the upload and put back if the push fails. Pushing again after
fixing the cause completes the push; files already on the Hub and unchanged are skipped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import HfcompressError, UsageError
from ..report import read_report

logger = logging.getLogger("hfcompress")

REPO_ID = re.compile(r"^[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9_.-]{1,96}$")
# Trainer checkpoints (optimizer state, pickles) and TensorBoard logs are not part of a published model.
IGNORE_PATTERNS = ["checkpoint-*/", "runs/", "*.lock"]
TOKEN_SCAN_LIMIT = 20 * 1024 * 1024  # files larger than this (weights) are not searched for the token


def resolve_token(token: str | None = None) -> str:
    """The token to push with: the argument, else `HF_TOKEN`, else the one saved by `hf auth login`."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HfcompressError(
            "No Hugging Face token found; set HF_TOKEN or run `hf auth login` with a token that has write access."
        )
    return token


def check_token(token: str | None = None) -> str:
    """Fail fast, before any training, when pushing could not work; returns the user name the token belongs to."""
    token = resolve_token(token)
    try:
        return _whoami(token)["name"]
    except Exception as err:  # noqa: BLE001 - every failure becomes one sentence
        raise HfcompressError(_scrub(explain(err, None, token), token)) from None


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload `folder` to the Hub model repo `repo_id` (created when missing) and return its URL.

    `repo_id` without a namespace goes to the token owner's namespace. `revision` names a branch, created from
    main when missing; `create_pr` opens a pull request against main instead of committing to it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"'{folder}' is not a directory; pass the output directory of an hfcompress command.")
    if not any(p.is_file() for p in folder.rglob("*")):
        raise UsageError(f"'{folder}' is empty; there is nothing to push.")
    if create_pr and revision and revision != "main":
        raise UsageError("A pull request is always opened against main; pass either --create-pr or --revision.")
    if "/" in repo_id:
        check_repo_id(repo_id)
    token = resolve_token(token)
    user, orgs = None, []
    saved: dict[Path, bytes | None] = {}
    try:
        me = _whoami(token)
        user, orgs = me.get("name"), [org.get("name") for org in me.get("orgs") or []]
        if "/" not in repo_id:
            repo_id = f"{user}/{repo_id}"
            check_repo_id(repo_id)
        saved = _refresh_card(folder, repo_id)
        _check_no_token_in_files(folder, token)
        url = _upload(folder, repo_id, private, revision, create_pr, commit_message, token)
    except BaseException as err:
        _restore(saved)
        if isinstance(err, HfcompressError):
            raise type(err)(_scrub(str(err), token)) from None
        if not isinstance(err, Exception):  # KeyboardInterrupt and friends
            raise
        logger.debug("Push failed: %s: %s", type(err).__name__, _scrub(str(err), token))
        owner_hint = _owner_hint(repo_id, user, orgs) if user else ""
        raise HfcompressError(_scrub(explain(err, repo_id, token, revision, owner_hint), token)) from None
    return url


def check_repo_id(repo_id: str) -> None:
    if not REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise UsageError(
            f"'{repo_id}' is not a valid Hub repo id; use NAMESPACE/NAME with letters, digits, '-', '_' or '.'."
        )


def _whoami(token: str) -> dict:
    from huggingface_hub import HfApi

    return HfApi().whoami(token=token)


def _upload(folder, repo_id, private, revision, create_pr, commit_message, token) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    repo_url = api.create_repo(repo_id, token=token, private=True if private else None, exist_ok=True)
    if private and not api.model_info(repo_id, token=token).private:
        raise HfcompressError(
            f"'{repo_id}' already exists and is public, so --private cannot be honoured; make it private on the Hub "
            "or push without --private."
        )
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message or _default_message(folder),
        token=token,
        revision=revision,
        create_pr=create_pr,
        ignore_patterns=list(IGNORE_PATTERNS),
    )
    if create_pr and info.pr_url:
        return info.pr_url
    return f"{repo_url}/tree/{revision}" if revision and revision != "main" else str(repo_url)


def _default_message(folder: Path) -> str:
    report = read_report(folder) or {}
    methods = [step.get("method", "") for step in report.get("steps", [])]
    if report.get("task") and methods:
        return f"Upload {' + '.join(methods)} {report['task']} model with hfcompress"
    return "Upload model with hfcompress"


def _refresh_card(folder: Path, repo_id: str) -> dict[Path, bytes | None]:
    """Re-render the model card for `repo_id` (its snippet then loads from the Hub); returns the files to restore."""
    from ..cards.metadata import run_id

    card = folder / "README.md"
    report = read_report(folder)
    if report is None or not report.get("task"):
        if not card.is_file():
            logger.warning("'%s' has no model card (no compression.json with a task); pushing it without one.", folder)
        return {}
    text = card.read_text(encoding="utf-8", errors="ignore") if card.is_file() else ""
    if f"<!-- hfcompress:repo_id={repo_id} -->" in text and f"(run {run_id(report)})" in text:
        return {}  # already rendered for this run and this repo
    from ..cards import CARD_NAME, CHART_NAME, write_model_card

    saved = {path: path.read_bytes() if path.is_file() else None for path in (folder / CARD_NAME, folder / CHART_NAME)}
    try:
        write_model_card(folder, repo_id=repo_id)
    except BaseException:
        _restore(saved)
        raise
    return saved


def _restore(saved: dict[Path, bytes | None]) -> None:
    for path, data in saved.items():
        if data is None:
            path.unlink(missing_ok=True)
        elif not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)


def _check_no_token_in_files(folder: Path, token: str) -> None:
    needle = token.encode()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stat().st_size <= TOKEN_SCAN_LIMIT and needle in path.read_bytes():
            raise HfcompressError(
                f"'{path.relative_to(folder)}' holds your Hugging Face token; remove it from the file and push again."
            )


def _owner_hint(repo_id: str, user: str, orgs: list[str]) -> str:
    namespace = repo_id.split("/")[0]
    if namespace == user or namespace in orgs:
        return ""
    return f": '{namespace}' is neither you ('{user}') nor one of your organisations"


def _scrub(message: str, token: str | None) -> str:
    if token:
        message = message.replace(token, "***")
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}\b", "hf_***", message)


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else ""


def explain(
    err: Exception, repo_id: str | None, token: str | None, revision: str | None = None, owner_hint: str = ""
) -> str:
    """One sentence saying why a Hub call failed and what to do about it."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    endpoint = constants.ENDPOINT
    target = f"'{repo_id}'" if repo_id else "the Hub"
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so nothing can be sent to the Hub; unset it and run the command again."
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        said = _first_line(err.server_message)
        said = f" (the Hub said: {said})" if said else ""
        if status == 401:
            return (
                f"The Hub at {endpoint} rejected the token (401 Unauthorized); set HF_TOKEN to a valid token with "
                "write access or run `hf auth login`."
            )
        if status == 403:
            return (
                f"The token is not allowed to write to {target} (403 Forbidden){owner_hint}; push to a namespace "
                "you own, or use a token with write access to it."
            )
        if status == 404:
            if revision and "revision" in str(err).lower():
                return f"Branch '{revision}' could not be found or created in {target} (404){said}."
            return f"{target} was not found, or the token cannot see it (404 Not Found){said}."
        if status == 413 or "too large" in said.lower():
            detail = _first_line(err.server_message)
            return (
                f"The Hub refused a file as too large ({status}{': ' + detail if detail else ''}); shard big "
                "weights with save_pretrained(max_shard_size=...) and push again."
            )
        if status == 429:
            return "The Hub is rate-limiting this token (429 Too Many Requests); wait a few minutes and push again."
        if status >= 500:
            return (
                f"The Hub at {endpoint} answered {status} (a server error) while pushing to {target}; the local "
                "folder is unchanged, so run the same command again later."
            )
        return f"The Hub refused the push to {target} ({status}){said}."
    text = _first_line(str(err))
    if isinstance(err, ValueError) and "LFS batch API returned errors" in str(err):
        detail = _first_line(str(err).split("errors:", 1)[-1]).strip("` ")
        return f"The Hub refused to store a large file ({detail}); shard big weights and push again."
    if isinstance(err, ValueError) and "Invalid metadata in README.md" in str(err):
        return f"The Hub rejected the model card's metadata ({_first_line(str(err).split('README.md.', 1)[-1])})."
    if _is_network_error(err):
        return (
            f"Could not reach the Hub at {endpoint} ({type(err).__name__}: {text or 'no answer'}); check the network "
            "or HF_ENDPOINT and run the command again."
        )
    if isinstance(err, RuntimeError) and err.__cause__ is not None:
        return explain(err.__cause__, repo_id, token, revision, owner_hint)
    return f"Pushing to {target} failed ({type(err).__name__}: {text or 'no details'})."


def without_retry_advice(message: str) -> str:
    """`explain`'s sentence without its advice to push or run the command again, for a caller that gives its own."""
    return re.sub(r"[;,]? (?:and |so )?(?:run the (?:same )?command again|push again)(?: later)?\.?$", "",
                  message).rstrip(".")  # fmt: skip


def _is_network_error(err: BaseException) -> bool:
    try:
        import httpx2

        if isinstance(err, httpx2.TransportError):
            return True
    except ImportError:  # an older huggingface_hub on httpx or requests
        pass
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "ConnectionError"})
