"""Fetching official checkpoints into the local cache, verified by sha256."""

import hashlib
import os
import shutil
import urllib.error
import urllib.request

from keras_rtmdet.weights.checkpoint import CheckpointError


def official_checkpoint(url):
    """A preset's checkpoint fields from an OpenMMLab URL: the file name and its hash prefix.

    OpenMMLab names files `<name>-<first 8 hex of the sha256>.pth`.
    """
    filename = url.rsplit("/", 1)[1]
    return {
        "checkpoint_url": url,
        "checkpoint_filename": filename,
        "sha256_prefix": filename[: -len(".pth")].rsplit("-", 1)[1],
    }


def cache_root():
    """`$KERAS_RTMDET_HOME`, else `~/.keras/keras_rtmdet`."""
    root = os.environ.get("KERAS_RTMDET_HOME")
    if not root:
        root = os.path.join(os.path.expanduser("~"), ".keras", "keras_rtmdet")
    return root


def checkpoint_cache_path(filename):
    return os.path.join(cache_root(), "checkpoints", filename)


def preset_cache_dir(preset_name):
    return os.path.join(cache_root(), "presets", preset_name)


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256_prefix(path, prefix):
    actual = sha256_of(path)
    if not actual.startswith(prefix):
        raise CheckpointError(
            f"{path} has sha256 {actual[:16]}…, expected a hash starting with {prefix}: "
            "the file is corrupt or not the official checkpoint. Delete it and retry."
        )


def fetch_checkpoint(url, filename, sha256_prefix, progress=True):
    """Return the local path of a checkpoint, downloading it once.

    A file already in the cache is verified, not re-downloaded. Offline, the
    error says where to put a copy of the file.
    """
    path = checkpoint_cache_path(filename)
    if os.path.exists(path):
        verify_sha256_prefix(path, sha256_prefix)
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            _copy_with_progress(response, out, total, filename if progress else None)
    except (urllib.error.URLError, OSError, ValueError) as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise CheckpointError(
            f"Could not download {url} ({error}). If this machine is offline, download "
            f"that file elsewhere and place it at {path} (its sha256 starts with "
            f"{sha256_prefix}), or pass checkpoint='/path/to/{filename}'."
        ) from error
    try:
        verify_sha256_prefix(partial, sha256_prefix)
    except CheckpointError:
        os.remove(partial)
        raise
    os.replace(partial, path)
    return path


def _copy_with_progress(source, target, total, label):
    if label is None:
        shutil.copyfileobj(source, target)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"Downloading {label}", total=total or None)
        for block in iter(lambda: source.read(1 << 20), b""):
            target.write(block)
            bar.update(task, advance=len(block))
