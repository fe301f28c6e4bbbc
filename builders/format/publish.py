"""Publishing a verified release folder to a Hugging Face dataset repo
(``python -m builders publish PATH --repo-id ORG/NAME [--private] [--dry-run]``).

Before anything is sent, :func:`publish_checks` runs, each check giving the reason it passed
or the one-line problem:

1. ``verify``: :func:`builders.format.verify.verify_release` finds nothing (hashes, counts,
   fields, splits, no stray files).
2. the card: ``huggingface_hub.DatasetCard`` parses README.md's YAML; ``datasets`` reads its
   ``configs`` (``MetadataConfigs``) and ``dataset_info`` (``DatasetInfosDict``) as the Hub's
   viewer will; every ``data_files`` path exists in the folder. The Hub's own YAML check
   (``DatasetCard.validate``, a call to the Hub's API) runs just before the upload.
3. Hub limits (https://huggingface.co/docs/hub/repositories-recommendations): under 100,000
   files, under 10,000 entries per folder, every file under 20 GB; a note (not a refusal)
   when shards are many and small (median under 10 MB over more than 100 shards).
4. a token: ``huggingface_hub.get_token()`` (``HF_TOKEN`` or ``hf auth login``); never printed.

The upload is ``HfApi.upload_large_folder`` where the installed huggingface_hub has it, else
``HfApi.upload_folder``, which since huggingface_hub 2 is itself resumable and commits a large
folder in several parts (with ``hf_xet``). Work folders (``.build/``) and lock files are never
uploaded.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from builders.format.manifest import CARD, WORK_DIR

MAX_FILES = 100_000
MAX_ENTRIES_PER_FOLDER = 10_000
MAX_FILE_BYTES = 20 * 10**9
SMALL_SHARD_BYTES = 10 * 10**6
IGNORE = [f"{WORK_DIR}/**", "*.lock", ".*.lock", "**/.*.tmp-*"]
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class PublishError(ValueError):
    """A release that must not be uploaded; the message is one line naming the problem."""


@dataclass
class Plan:
    """What a publish would do: the files (relative path -> bytes) and each check's reason."""

    path: Path
    repo_id: str
    private: bool
    files: dict = field(default_factory=dict)
    passed: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    token_found: bool = False

    def describe(self) -> str:
        """The dry-run report."""
        total = sum(self.files.values())
        lines = [f"would upload {len(self.files)} files, {total / 1e6:.1f} MB, from {self.path} to the "
                 f"{'private' if self.private else 'public'} dataset repo {self.repo_id}:"]
        lines += [f"  {name}  {size:,} bytes" for name, size in sorted(self.files.items())]
        lines += [f"check passed: {p}" for p in self.passed]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _files(path: Path) -> dict:
    from huggingface_hub.utils import filter_repo_objects

    names = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink()]
    kept = list(filter_repo_objects(names, ignore_patterns=IGNORE))
    return {n: (path / n).stat().st_size for n in kept}


def check_card(path: Path) -> str:
    """Parse README.md as the Hub and ``datasets`` will; returns the reason it passed.

    Raises:
        PublishError: naming what is wrong with the card.
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    card_file = path / CARD
    if not card_file.is_file():
        raise PublishError(f"{card_file}: missing (the dataset card)")
    try:
        card = DatasetCard.load(card_file)
    except Exception as err:  # noqa: BLE001 - any parse error is the problem reported
        raise PublishError(f"{card_file}: the Hub cannot parse its YAML header ({type(err).__name__}: {err})") from None
    data = card.data
    if not data.get("license"):
        raise PublishError(f"{card_file}: the YAML header has no license")
    try:
        configs = MetadataConfigs.from_dataset_card_data(data)
        infos = DatasetInfosDict.from_dataset_card_data(data)
    except Exception as err:  # noqa: BLE001
        raise PublishError(f"{card_file}: datasets cannot read its configs/dataset_info ({err})") from None
    if not configs:
        raise PublishError(f"{card_file}: the YAML header declares no configs")
    n_files = 0
    for name, config in configs.items():
        for entry in config.get("data_files", []):
            for rel in ([entry["path"]] if isinstance(entry["path"], str) else entry["path"]):
                if not (path / rel).is_file():
                    raise PublishError(f"{card_file}: config {name} lists {rel}, which is not in the folder")
                n_files += 1
        if name not in infos or infos[name].features is None:
            raise PublishError(f"{card_file}: config {name} has no dataset_info features")
    return (f"card: YAML parsed by huggingface_hub.DatasetCard; license {data.get('license')}; "
            f"{len(configs)} config(s) ({', '.join(configs)}) read by datasets with features; all {n_files} "
            f"data_files present")


def check_layout(files: dict) -> tuple[str, list]:
    """The Hub's repository limits; returns (reason passed, notes).

    Raises:
        PublishError: over a limit.
    """
    if len(files) >= MAX_FILES:
        raise PublishError(f"{len(files):,} files: the Hub recommends under {MAX_FILES:,} per repo; use larger shards")
    per_folder: dict = {}
    for name in files:
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        per_folder[parent] = per_folder.get(parent, 0) + 1
    folder, most = max(per_folder.items(), key=lambda kv: kv[1])
    if most >= MAX_ENTRIES_PER_FOLDER:
        raise PublishError(f"{folder or '.'}: {most:,} files; the Hub recommends under {MAX_ENTRIES_PER_FOLDER:,} "
                           f"per folder; use larger shards")
    name, biggest = max(files.items(), key=lambda kv: kv[1])
    if biggest >= MAX_FILE_BYTES:
        raise PublishError(f"{name}: {biggest / 1e9:.1f} GB; the Hub takes files under {MAX_FILE_BYTES / 1e9:.0f} GB; "
                           f"use smaller shards")
    shards = [size for n, size in files.items() if n.endswith(".tar")]
    notes = []
    if len(shards) > 100 and statistics.median(shards) < SMALL_SHARD_BYTES:
        notes.append(f"{len(shards)} shards of median {statistics.median(shards) / 1e6:.1f} MB: larger shards "
                     f"(100 MB to 1 GB) stream faster")
    return (f"layout: {len(files)} files (limit {MAX_FILES:,}), at most {most} in one folder ({folder or '.'}; limit "
            f"{MAX_ENTRIES_PER_FOLDER:,}), largest {name} {biggest / 1e6:.1f} MB (limit "
            f"{MAX_FILE_BYTES / 1e9:.0f} GB)"), notes


def publish_checks(path, repo_id: str, private: bool = False) -> Plan:
    """Every check before an upload; the :class:`Plan` of what would be uploaded.

    Raises:
        PublishError: the first check that fails, in one line.
    """
    from huggingface_hub import get_token

    from builders.format.verify import verify_release

    path = Path(path)
    if not REPO_ID.match(repo_id or ""):
        raise PublishError(f"--repo-id {repo_id!r} must look like ORG/NAME")
    if not path.is_dir():
        raise PublishError(f"{path}: not a release folder")
    problems = verify_release(path)
    if problems:
        raise PublishError(f"{path}: verify found {len(problems)} problem(s), the first: {problems[0]}")
    plan = Plan(path, repo_id, private, files=_files(path))
    plan.passed.append("verify: every shard's sha256, size and sample count match manifest.json; splits disjoint; croissant.json is what the manifest gives and mlcroissant finds no error")
    plan.passed.append(check_card(path))
    layout, notes = check_layout(plan.files)
    plan.passed.append(layout)
    plan.notes += notes
    plan.token_found = get_token() is not None
    if plan.token_found:
        plan.passed.append("token: found by huggingface_hub.get_token() (HF_TOKEN or a saved login)")
    else:
        plan.notes.append("no Hugging Face token found (set HF_TOKEN or run `hf auth login`); an upload would fail")
    return plan


def publish(plan: Plan) -> str:
    """Upload a checked release: the Hub validates the card's YAML, the dataset repo is created if
    needed, then the folder is uploaded (resumable: run it again after an interruption).

    Returns:
        the repo's URL.
    Raises:
        PublishError: no token, or the Hub refuses the card.
    """
    from huggingface_hub import DatasetCard, HfApi

    if not plan.token_found:
        raise PublishError("no Hugging Face token found: set HF_TOKEN or run `hf auth login`")
    try:
        DatasetCard.load(plan.path / CARD).validate(repo_type="dataset")
    except ValueError as err:
        raise PublishError(f"{plan.path / CARD}: the Hub refuses the card: {err}") from None
    api = HfApi()
    url = api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private, exist_ok=True)
    upload = getattr(api, "upload_large_folder", None)
    if upload is not None:
        upload(repo_id=plan.repo_id, folder_path=str(plan.path), repo_type="dataset", ignore_patterns=IGNORE)
    else:
        api.upload_folder(repo_id=plan.repo_id, folder_path=str(plan.path), repo_type="dataset",
                          ignore_patterns=IGNORE, commit_message=f"densegen release {plan.path.name}")
    return str(url)


__all__ = ["PublishError", "Plan", "publish_checks", "publish", "check_card", "check_layout"]
