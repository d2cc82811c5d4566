"""Where exported files live and how they are tied to a checkpoint.

An export directory holds the ONNX graphs, ``manifest.json`` and (on a GPU
machine) ``tensorrt/`` engines. The manifest records the checkpoint's
fingerprint; a runtime refuses an export made from other weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2  # 2: the LLM graph returns every position's hidden state; perception reads them
# Files that define a checkpoint's behaviour (weights, model config, tokenizer).
FINGERPRINT_FILES = ("model.safetensors", "config.yaml", "tokenizer.json")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def checkpoint_fingerprint(checkpoint: Path) -> str:
    """sha256 over the checkpoint's defining files (names and contents)."""
    digest = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        path = Path(checkpoint) / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def default_export_dir(checkpoint: Path) -> Path:
    """$ROS_PGPT_EXPORT_DIR, else ``<checkpoint>/export`` when writable, else a per-user cache."""
    env = os.environ.get("ROS_PGPT_EXPORT_DIR")
    if env:
        return Path(env)
    checkpoint = Path(checkpoint)
    inside = checkpoint / "export"
    if inside.is_dir() or os.access(checkpoint, os.W_OK):
        return inside
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ros_pgpt" / "export"
    return cache / checkpoint_fingerprint(checkpoint)[:16]


def read_manifest(export_dir: Path) -> dict | None:
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def export_status(checkpoint: Path, export_dir: Path) -> tuple[bool, str]:
    """(usable, reason): whether ``export_dir`` holds a complete export of ``checkpoint``."""
    manifest = read_manifest(export_dir)
    if manifest is None:
        return False, f"no {MANIFEST} in {export_dir} (run: ros-pgpt export --checkpoint {checkpoint})"
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        return False, f"{export_dir}/{MANIFEST} has format {manifest.get('manifest_version')}, need {MANIFEST_VERSION}"
    if manifest.get("checkpoint_sha256") != checkpoint_fingerprint(checkpoint):
        return False, f"{export_dir} was exported from other weights than {checkpoint}"
    missing = [entry["file"] for entry in manifest.get("files", {}).values()
               if not (Path(export_dir) / entry["file"]).is_file()]
    if missing:
        return False, f"{export_dir} lacks {', '.join(missing[:3])}"
    return True, f"export in {export_dir} matches the checkpoint"
