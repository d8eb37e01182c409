"""Publish the Gradio Space (the repository's ``spaces/`` folder) with hf_vssl vendored, in one command.

    python -m hf_vssl.hub.space --repo_id org/hf-vssl-demo [--private] [--token T] [--endpoint URL]

One commit holds the Space's files (``app.py``, its ``README.md`` with the Space settings,
``requirements.txt``, ``packages.txt``, ``examples/``) and a copy of the ``hf_vssl`` package
source beside ``app.py`` (the Space imports it from there; ``requirements.txt`` pins what it
needs). The repo is created with the Gradio SDK when it does not exist; files of an earlier
upload that are no longer part of the Space are deleted in the same commit. Errors are
:class:`hf_vssl.hub.publish.HubPublishError` with what to do next. See ``spaces/README.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.utils import filter_repo_objects

from hf_vssl._version import __version__
from hf_vssl.hub.publish import DEFAULT_IGNORE_PATTERNS, HubPublishError, _commit

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The Space folder of a source checkout (the package's sibling).
DEFAULT_SPACE_DIR = PACKAGE_DIR.parent / "spaces"
#: What the Space needs of the package: its source and data files (the package data of pyproject.toml).
PACKAGE_PATTERNS = ("*.py", "*.json", "*.yaml", "*.md", "*.txt", "*.csv")
IGNORE_PATTERNS = (*DEFAULT_IGNORE_PATTERNS, "*__pycache__*", ".gradio/*", "flagged/*")
#: Files of the Space repo that an upload never deletes (the Hub's own).
KEEP = (".gitattributes",)


def _files(folder: Path, allow: tuple[str, ...] | None) -> list[str]:
    paths = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    return list(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=list(IGNORE_PATTERNS)))


def space_files(space_dir: str | Path = DEFAULT_SPACE_DIR) -> dict[str, Path]:
    """``{path in the Space repo: local file}``: the Space folder's files, then the vendored package."""
    space_dir = Path(space_dir)
    if not (space_dir / "app.py").is_file() or not (space_dir / "README.md").is_file():
        raise HubPublishError(
            f"{space_dir} is not a Space folder (it needs app.py and README.md); run from a source "
            "checkout of hf_vssl or pass --space_dir"
        )
    files = {name: space_dir / name for name in _files(space_dir, None)}
    if any(name.split("/")[0] == "hf_vssl" for name in files):
        raise HubPublishError(
            f"{space_dir} has its own hf_vssl/ folder; remove it (the upload vendors the package)"
        )
    files.update({f"hf_vssl/{name}": PACKAGE_DIR / name for name in _files(PACKAGE_DIR, PACKAGE_PATTERNS)})
    return files


def publish_space(
    repo_id: str,
    space_dir: str | Path = DEFAULT_SPACE_DIR,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create (if needed) the Gradio Space ``repo_id`` and upload the Space with hf_vssl vendored; returns its URL.

    Raises :class:`HubPublishError` (not a Space folder, no token, offline, permission denied, ...).
    """
    files = space_files(space_dir)

    def operations_for(full_id: str) -> list[CommitOperationAdd | CommitOperationDelete]:
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()
        ]
        api = HfApi(endpoint=endpoint, token=token)
        if api.repo_exists(full_id, repo_type="space"):
            stale = set(api.list_repo_files(full_id, repo_type="space")) - set(files) - set(KEEP)
            operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(stale)]
        return operations

    url, _ = _commit(
        Path(space_dir),
        repo_id,
        operations_for,
        repo_type="space",
        private=private,
        token=token,
        commit_message=commit_message or f"Upload the hf_vssl Space (hf_vssl {__version__} vendored)",
        endpoint=endpoint,
        space_sdk="gradio",
    )
    return url


def main(argv: list[str] | None = None) -> str:
    """``python -m hf_vssl.hub.space --repo_id org/name``: publish the Space and print its URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo_id", required=True, help="the Space repo, `org/name` (or `name` under your user)"
    )
    parser.add_argument(
        "--space_dir", type=Path, default=DEFAULT_SPACE_DIR, help="the Space folder (default: spaces/)"
    )
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--token", help="Hub token (default: the logged-in one, or HF_TOKEN)")
    parser.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--commit_message")
    args = parser.parse_args(argv)
    try:
        url = publish_space(
            args.repo_id, args.space_dir, args.private, args.token, args.commit_message, args.endpoint
        )
    except HubPublishError as error:
        parser.exit(1, f"error: {error}\n")
    print(url)
    return url


__all__ = ["DEFAULT_SPACE_DIR", "publish_space", "space_files"]

if __name__ == "__main__":
    main()
