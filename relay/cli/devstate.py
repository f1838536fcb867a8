"""What ``relay dev`` keeps between runs: its sealing key and its signing secret, in a file only the user reads.

``relay dev`` without ``RELAY_ENCRYPTION_KEY`` or ``RELAY_SIGNING_SECRETS`` takes them from this file, made on
its first run: a receiver configured with the secret keeps verifying across restarts, and what a persistent
``REDIS_URL`` holds stays readable. The file is JSON, ``{"encryptionKey": ..., "signingSecret": ...}``, at
``$XDG_STATE_HOME/relay/dev.json`` (``~/.local/state/relay/dev.json`` without it), mode 0600 in a 0700 directory.

Other commands that work with ``relay dev`` (a local receiver that verifies its events, for one) read the same
file with :func:`load_dev_state`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from relay.config.parsing import ConfigError, check_secret

__all__ = ["DevState", "dev_state", "dev_state_path", "load_dev_state", "new_secret"]


def _check_key(key: str) -> None:
    """ValueError unless ``key`` is a Fernet key (32 bytes in URL-safe base64), as ``Fernet(key)`` would say
    (without importing cryptography, ~8.5 MiB resident, into every process that imports the CLI)."""
    if len(base64.urlsafe_b64decode(key.encode())) != 32:  # binascii.Error is a ValueError
        raise ValueError("not a Fernet key")


@dataclass(frozen=True, slots=True)
class DevState:
    """The key ``relay dev`` seals stored credentials with, and the secret it signs events with."""

    path: Path
    encryption_key: str
    signing_secret: str

    def __repr__(self) -> str:  # never the key or the secret
        return f"DevState(path={str(self.path)!r})"


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def dev_state_path(env: Mapping[str, str] | None = None) -> Path:
    """Where ``relay dev`` keeps its state: under ``$XDG_STATE_HOME`` (``~/.local/state`` when unset or relative)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "relay" / "dev.json"


def load_dev_state(path: Path | None = None) -> DevState | None:
    """The state ``relay dev`` kept at ``path`` (default :func:`dev_state_path`); None when it has none yet.

    :class:`ConfigError` names the file when it cannot be read or does not hold a key and a secret.
    """
    path = path or dev_state_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read relay dev's state ({exc.strerror})") from None
    try:
        data = json.loads(raw)
        key, secret = str(data["encryptionKey"]), check_secret(str(data["signingSecret"]))
        _check_key(key)
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not relay dev's state (remove it to have a new key and secret made)") from None
    _owner_only(path)
    return DevState(path, key, secret)


def dev_state(path: Path | None = None) -> DevState:
    """The state kept at ``path``, made (with a new key and secret, mode 0600) when there is none."""
    path = path or dev_state_path()
    found = load_dev_state(path)
    if found is not None:
        return found
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = DevState(path, base64.urlsafe_b64encode(os.urandom(32)).decode(), new_secret())
    body = json.dumps({"encryptionKey": made.encryption_key, "signingSecret": made.signing_secret}, indent=2)
    # written whole to a file of its own, then linked into place: another relay dev starting at the same moment
    # finds either no file or a complete one, and the first to link it wins
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(body + "\n")
        with contextlib.suppress(FileExistsError):  # another relay dev made it first: its state is the one
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    kept = load_dev_state(path)
    assert kept is not None
    return kept


def _owner_only(path: Path) -> None:
    """A state file others could read (copied, or made by hand) is made the owner's alone."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)
