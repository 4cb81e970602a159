"""Secrets: exactly one of ``api_key`` / ``api_key_file`` and of ``token`` / ``token_file``.

They are resolved before validation: a file is read (whitespace stripped; a relative
path is taken from the config file's directory) and the value becomes a
``SecretStr``. A problem names the key or the path, never the content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent.config.messages import _kind, _Problem

# A secret file bigger than this is the wrong file (or /dev/zero), not a key.
MAX_SECRET_FILE_BYTES = 64 * 1024


_SECRETS = (("cloud", "api_key"), ("api", "token"))
_FILL = {
    "api_key": "put the locker's api-key in it, alone (install.sh makes the file,"
    " root:locker-agent 640)",
    "token": "put a long random token in it, alone: openssl rand -hex 24 (install.sh makes"
    " one, root:locker-agent 640)",
}


def _resolve_secrets(data: dict[str, Any], base_dir: Path) -> list[_Problem]:
    """Turn ``x`` / ``x_file`` into one SecretStr in ``data`` (in place); problems."""
    problems: list[_Problem] = []
    for section, key in _SECRETS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            continue  # pydantic reports "must be a table"
        file_key = f"{key}_file"
        table = dict(table)
        data[section] = table
        has_value, has_file = key in table, file_key in table
        problem: _Problem | None = None
        secret: SecretStr | None = None
        file_path: Path | None = None
        if has_value and has_file:
            problem = ((section, key), f"give either {key} or {file_key}, not both")
        elif not has_value and not has_file:
            problem = ((section, key), f"missing: set {key} or {file_key}")
        elif has_value:
            value = table[key]
            if not isinstance(value, str):
                problem = ((section, key), f"must be a string (got {_kind(value)})")
            elif not value.strip():
                problem = ((section, key), "must not be empty")
            else:
                secret = SecretStr(value)
        else:
            raw = table[file_key]
            if not isinstance(raw, str) or not raw.strip():
                problem = ((section, file_key), "must be a file path (a non-empty string)")
            else:
                file_path = Path(raw).expanduser()
                if not file_path.is_absolute():
                    file_path = base_dir / file_path
                text, error = read_secret_file(file_path)
                if error is not None:
                    problem = ((section, file_key), f"{error}: {_FILL[key]}")
                else:
                    secret = SecretStr(text)
        if problem is not None:
            problems.append(problem)
            # A stand-in so pydantic does not report the same key again; the
            # ConfigError raised for `problem` means it never escapes.
            secret = SecretStr("-")
        table.pop(file_key, None)
        table[key] = secret
        table[file_key] = file_path
    return problems


def read_secret_file(path: Path) -> tuple[str, str | None]:
    """(stripped text, None) or ("", a message naming the path, never the content)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE_BYTES + 1)
    except ValueError:  # an embedded NUL: no file can have that name
        return "", f"{path!r} is not a valid path"
    except OSError as e:
        return "", f"cannot read {path}: {e.strerror or type(e).__name__}"
    if len(raw) > MAX_SECRET_FILE_BYTES:
        return "", f"{path} is larger than {MAX_SECRET_FILE_BYTES} bytes: not a key file"
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "", f"{path} is not UTF-8 text"
    if not text:
        return "", f"{path} is empty"
    return text, None
