"""Publishing checkpoint folders (model repos) and shard / subset folders (dataset repos).

One publish is one commit: the folder's files plus a freshly rendered card go up through
``HfApi.create_commit``, so a repo never shows half an upload. The local folder is only read
until the commit succeeded; then the card is saved as its ``README.md`` so folder and repo
match. Any failure raises :class:`HubPublishError` with what to do next, and leaves the folder
byte-identical.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import yaml
from huggingface_hub import (
    CommitOperationAdd,
    DatasetCard,
    DatasetCardData,
    HfApi,
    ModelCard,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects, validate_repo_id

from hf_vssl._version import __version__
from hf_vssl.hub.cards import LIBRARY_TAG, build_model_card
from hf_vssl.hub.reports import PathLike, redact_local_paths

logger = logging.getLogger(__name__)

# Resume states (optimizer pickles) and other pickle formats never leave the machine: published
# checkpoints are safetensors only. Patterns match the path relative to the folder.
DEFAULT_IGNORE_PATTERNS = (
    "checkpoints/*",
    "checkpoint-*/*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.pickle",
    "*.pyc",
    ".git/*",
    ".cache/*",
    ".lock",
    ".staging/*",
)  # the run's lock (host, pid)


class HubPublishError(RuntimeError):
    """Publishing failed; the message says why and what to do. The local folder is unchanged."""


def _token_or_raise(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise HubPublishError(
            "no Hugging Face token found: run `hf auth login`, or pass token=..., or set the HF_TOKEN "
            "environment variable (a token with write access, from https://huggingface.co/settings/tokens)"
        )
    return token


def _is_network_error(error: BaseException) -> bool:
    # huggingface_hub speaks httpx (1.x) or httpx2 (2.x); match both without importing either.
    module = type(error).__module__.split(".")[0]
    return module in ("httpx", "httpx2", "httpcore") or isinstance(error, (ConnectionError, TimeoutError))


@contextlib.contextmanager
def _explained(action: str, repo_id: str, endpoint: str, folder: Path) -> Iterator[None]:
    """Turn client errors into a :class:`HubPublishError` that says what happened and what to do."""
    unchanged = f"nothing was committed and {folder} is unchanged"
    try:
        yield
    except HubPublishError:
        raise
    except OfflineModeIsEnabled as error:
        raise HubPublishError(
            f"cannot publish while HF_HUB_OFFLINE=1 is set ({unchanged}); unset it and retry"
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        server = (error.server_message or str(error)).strip().splitlines()[0]
        if status == 401:
            hint = (
                "the token was rejected (invalid or expired): run `hf auth login` again, or pass a valid "
                "token= / HF_TOKEN"
            )
        elif status == 403:
            hint = (
                f"permission denied: the token cannot write to {repo_id!r} (the namespace belongs to another "
                "user or organisation, or the token is read-only); publish under your own namespace, or ask "
                "the repo owner for write access"
            )
        elif status == 404:
            hint = (
                f"{repo_id!r} was not found or is not visible with this token (a private repo of someone "
                "else?)"
            )
        elif status in (409, 412):
            hint = "the repo changed during the upload (a concurrent push); run publish again"
        elif status is not None and status >= 500:
            hint = f"the Hub at {endpoint} had a server error ({status}); retry later"
        else:
            hint = f"the Hub at {endpoint} answered {status}"
        raise HubPublishError(
            f"{action} {repo_id!r} failed: {hint} ({unchanged}). Server said: {server}"
        ) from error
    except Exception as error:
        if not _is_network_error(error):
            raise
        raise HubPublishError(
            f"{action} {repo_id!r} failed: could not reach the Hub at {endpoint} ({type(error).__name__}: "
            f"{error}); {unchanged}. Check the network connection (and HF_ENDPOINT), then run publish again: "
            "the upload is a single commit, so retrying is safe"
        ) from error


def _resolve_repo_id(api: HfApi, repo_id: str, token: str, endpoint: str, folder: Path) -> str:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubPublishError(f"invalid repo id {repo_id!r}: {error}") from None
    if "/" in repo_id:
        return repo_id
    with _explained("looking up the user of the token for", repo_id, endpoint, folder):
        return f"{api.whoami(token=token)['name']}/{repo_id}"


def model_files(folder: PathLike) -> tuple[dict[str, Path], list[str]]:
    """The files of ``folder`` that may leave the machine, ``{path in repo: real path}``, and what was
    left out (``"path (why)"``), whatever the ignore patterns say:

    - hidden files and folders (``.env``, ``.git``, the run's ``.lock`` and ``.staging``);
    - anything reached through a symlink that resolves outside the folder (files or folders);
    - TensorBoard event files: their names carry the host and process id, and the hyperparameters
      they record include the run's local paths (the training curves are in ``log_history.jsonl``).
    """
    root = Path(folder).resolve()
    kept: dict[str, Path] = {}
    left_out: list[str] = []
    seen = {root}

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(directory.iterdir(), key=lambda path: path.name):
            name = prefix + entry.name
            real = entry.resolve()
            if entry.name.startswith("."):
                left_out.append(f"{name} (hidden)")
            elif not real.is_relative_to(root):
                left_out.append(f"{name} (a symlink to {real}, outside the folder)")
            elif real.is_dir():
                if real in seen:  # a symlink back into the tree: each folder is uploaded once
                    left_out.append(f"{name} (a symlink to a folder already uploaded)")
                else:
                    seen.add(real)
                    walk(entry, name + "/")
            elif "tfevents" in entry.name:
                left_out.append(f"{name} (TensorBoard event file)")
            elif real.is_file():
                kept[name] = real

    walk(root, "")
    return kept, left_out


def _redacted(path: Path) -> bytes | None:
    """The bytes to upload instead of a JSON / YAML file that holds local paths, else None."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None  # not a settings file we can read: uploaded as it is
    public = redact_local_paths(data)
    if public == data:
        return None
    if suffix == ".json":
        return (json.dumps(public, indent=2) + "\n").encode()
    return yaml.safe_dump(public, sort_keys=False).encode()


def _folder_operations(
    folder: Path, ignore_patterns: Sequence[str], skip: set[str]
) -> list[CommitOperationAdd]:
    """One upload per file that belongs to the model (:func:`model_files`, minus ``ignore_patterns``);
    JSON / YAML files holding local paths (``training_args.yaml``'s ``dataset_root``, ``output_dir``, a
    local ``model_name_or_path``, ...) go up as redacted copies made in memory: the folder is only read."""
    files, left_out = model_files(folder)
    kept = filter_repo_objects([p for p in files if p not in skip], ignore_patterns=list(ignore_patterns))
    if left_out:
        logger.warning("not uploaded from %s: %s", folder, "; ".join(left_out))
    operations = []
    for name in kept:
        redacted = _redacted(files[name])
        if redacted is not None:
            logger.info("uploading %s with its local paths replaced by placeholders", name)
        operations.append(
            CommitOperationAdd(
                path_in_repo=name, path_or_fileobj=redacted if redacted is not None else str(files[name])
            )
        )
    return operations


def _own_card(readme: Path) -> bool:
    """True when README.md is absent or a card hf_vssl wrote (a hand-written README is kept)."""
    if not readme.exists():
        return True
    try:
        data = ModelCard.load(readme).data
    except Exception:  # noqa: BLE001 (any unparsable README is the user's: leave it alone)
        return False
    # hf_vssl's cards are tagged hf_vssl (older ones declared it as their library).
    return data.library_name == LIBRARY_TAG or LIBRARY_TAG in (data.tags or [])


def _commit(
    path: Path,
    repo_id: str,
    operations_for: Callable[[str], list[CommitOperationAdd]],
    *,
    repo_type: str,
    private: bool,
    token: str | None,
    commit_message: str | None,
    endpoint: str | None,
    space_sdk: str | None = None,
) -> tuple[str, str | None]:
    """Create the repo and push ``operations_for(full_repo_id)`` as one commit; returns (URL, card text).

    ``space_sdk`` (``"gradio"``, ...) is required by the Hub when ``repo_type="space"``."""
    token = _token_or_raise(token)
    api = HfApi(endpoint=endpoint, token=token, library_name="hf_vssl", library_version=__version__)
    repo_id = _resolve_repo_id(api, repo_id, token, api.endpoint, path)
    operations = operations_for(repo_id)
    if not operations:
        raise HubPublishError(f"{path} has nothing to upload (every file matched the ignore patterns)")
    message = commit_message or f"Upload {repo_id.split('/')[-1]} with hf_vssl {__version__}"
    with _explained("creating the repo", repo_id, api.endpoint, path):
        # Look first rather than rely on create_repo(exist_ok=True): for a repo the token may not
        # create (someone else's), its 403 fallback builds a URL that huggingface_hub 2.4 rejects
        # for custom endpoints; a plain commit then reports the permission problem clearly.
        if api.repo_exists(repo_id, repo_type=repo_type):
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            url = f"{api.endpoint}/{prefix}{repo_id}"
        else:
            url = api.create_repo(
                repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk
            )
    with _explained("uploading to", repo_id, api.endpoint, path):
        api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type)
    logger.info("published %s (%d files) to %s", path, len(operations), url)
    card = next(
        (
            op.path_or_fileobj
            for op in operations
            if op.path_in_repo == "README.md" and isinstance(op.path_or_fileobj, bytes)
        ),
        None,
    )
    return str(url), card.decode() if card is not None else None


def publish(
    folder: PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
) -> str:
    """Upload a checkpoint folder to the Hub in one commit, with a fresh model card; returns the repo URL.

    The repo is created if needed (``exist_ok``). ``repo_id`` without a namespace goes under the
    token's user. The card (:func:`hf_vssl.hub.build_model_card`) is rendered from the folder's
    reports and committed as ``README.md`` (a hand-written README is uploaded as is instead);
    after the commit it is saved into the folder too. Resume states and pickles
    (``ignore_patterns``) stay local. ``endpoint`` defaults to ``HF_ENDPOINT`` / huggingface.co.

    Raises :class:`HubPublishError` (no token, offline mode, network failure, permission denied,
    ...) and leaves the folder untouched on any failure.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HubPublishError(f"{folder} is not a folder")
    readme = folder / "README.md"
    with_card = repo_type == "model" and _own_card(readme)
    if repo_type == "model" and not (folder / "config.json").is_file():
        raise HubPublishError(
            f"{folder} has no config.json: not a checkpoint folder (save_pretrained writes one)"
        )

    def operations_for(full_id: str) -> list[CommitOperationAdd]:
        operations = _folder_operations(folder, ignore_patterns, skip={"README.md"} if with_card else set())
        if with_card:
            card = str(build_model_card(folder, repo_id=full_id))
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
        return operations

    url, card = _commit(
        folder,
        repo_id,
        operations_for,
        repo_type=repo_type,
        private=private,
        token=token,
        commit_message=commit_message,
        endpoint=endpoint,
    )
    if card is not None and (not readme.exists() or readme.read_text(encoding="utf-8") != card):
        readme.write_text(card, encoding="utf-8")
    return url


_DATASET_CARD = """---
{{ card_data }}
---

# {{ name }}

{{ description }}

Made with hf_vssl {{ version }}. {{ usage }}
"""


def _dataset_card(path: Path, repo_id: str) -> str:
    if path.is_file():
        subset = json.loads(path.read_text(encoding="utf-8"))
        description = (
            f"A class-balanced, nested video subset: {subset.get('size', len(subset.get('ids', [])))} "
            f"video ids (seed {subset.get('seed')}) in `{path.name}`, with per-class counts."
        )
        usage = (
            "Rebuild it from a local copy of the corpus: `hf_vssl.data.subsets.select_by_ids(records, "
            f"load_subset(hf_hub_download('{repo_id}', '{path.name}', repo_type='dataset')))`."
        )
    else:
        manifest_path = path / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        splits = ", ".join(
            f"{name}: {info.get('num_videos')} videos"
            for name, info in (manifest.get("splits") or {}).items()
        )
        description = "Video clips as WebDataset shards (video bytes + json metadata per sample)" + (
            f"; {splits}." if splits else "."
        )
        usage = f"Stream it with `hf_vssl.data.load_video_dataset('{repo_id}', split='train')`."
    data = DatasetCardData(tags=["video", "hf_vssl", "webdataset"] if path.is_dir() else ["video", "hf_vssl"])
    return str(
        DatasetCard.from_template(
            data,
            template_str=_DATASET_CARD,
            name=repo_id.split("/")[-1],
            description=description,
            usage=usage,
            version=__version__,
        )
    )


def publish_dataset(
    folder: PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
) -> str:
    """Upload a shard folder (``build_shards`` output) or a subset id list to a dataset repo; returns its URL.

    ``folder`` is a folder (uploaded whole, one commit) or a single file such as
    ``subset_ids.json`` (uploaded under its name). A short dataset card is added when the folder
    has no ``README.md``; the local files are never modified. Errors as in :func:`publish`.
    """
    path = Path(folder)
    if not path.exists():
        raise HubPublishError(f"{path} does not exist")

    def operations_for(full_id: str) -> list[CommitOperationAdd]:
        if path.is_file():
            operations = [CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path))]
        else:
            operations = _folder_operations(path, ignore_patterns, skip=set())
        if path.is_file() or not (path / "README.md").exists():
            card = _dataset_card(path, full_id).encode()
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
        return operations

    url, _ = _commit(
        path,
        repo_id,
        operations_for,
        repo_type="dataset",
        private=private,
        token=token,
        commit_message=commit_message,
        endpoint=endpoint,
    )
    return url


__all__ = ["DEFAULT_IGNORE_PATTERNS", "HubPublishError", "model_files", "publish", "publish_dataset"]
