"""Small I/O helpers shared by every stage: atomic writes, JSON lines, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from crystalflow_core.errors import ConfigError, DamagedFileError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv_atomic(df, path) -> None:
    """A pandas DataFrame as CSV (no index) at `path`, written whole or not at all (the one CSV writer)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_jsonl_atomic(path, records: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")


def append_jsonl(path, record: dict) -> None:
    """Append one record and flush it to disk (used for resumable, incremental stages)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path, tolerate_truncated_tail: bool = False) -> list[dict]:
    """Read JSON lines strictly: files written atomically end with a newline and every line is one
    JSON object, so anything else is damage and an error naming the file and line. Only the
    append-as-you-go files of resumable stages (`*.partial`) may end in a half-written line, which
    `tolerate_truncated_tail` then drops."""
    out = []
    try:
        with open(path) as fh:
            lines = fh.readlines()
    except UnicodeDecodeError as exc:
        raise DamagedFileError(f"{path}: not a text file ({exc})") from exc
    for n, line in enumerate(lines):
        last = n == len(lines) - 1
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise json.JSONDecodeError("not a JSON object", line, 0)
            if last and not line.endswith("\n"):
                raise json.JSONDecodeError("no newline at the end: the file was cut", line, len(line))
            out.append(rec)
        except json.JSONDecodeError as exc:
            if tolerate_truncated_tail and last:
                break
            raise DamagedFileError(
                f"{path}: line {n + 1} is damaged ({exc.msg}); the file was truncated or "
                f"edited: delete it to have it rebuilt"
            ) from None
    return out


def resume_jsonl(path) -> list[dict]:
    """The records a killed job had finished in `path` ([] when absent); a torn last line is dropped
    from the file too, so appending can go on."""
    path = Path(path)
    if not path.exists():
        return []
    recs = read_jsonl(path, tolerate_truncated_tail=True)
    write_jsonl_atomic(path, recs)
    return recs


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_id(data: bytes) -> str:
    """Git's blob id: sha1(b"blob <len>\\0" + data)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def content_key(value, length: int = 16) -> str:
    """The short sha256 of what a piece of work is made from (JSON, keys sorted, other values by str): the
    one key of sample provenance, resumable partials and relaxation settings."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def closest_name(name: str, known) -> str | None:
    """The known name most like `name` (a misspelt column or key), None when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return close[0] if close else None


def check_columns(path, columns, known: dict[str, str]) -> None:
    """A table a user wrote for the project has only columns the project reads (`known`: name -> what it
    holds): an unknown one is refused naming the file, the column and the closest known name."""
    for col in columns:
        if col not in known:
            close = closest_name(col.lower(), known)
            hint = f"; did you mean '{close}' ({known[close]})?" if close else ""
            raise ConfigError(f"{path}: unknown column '{col}'{hint} (columns: {', '.join(known)})")


def table_number(path, row, column: str, text, cast=float):
    """`text` of a cell as a number (`cast`), or one line naming file, row and column (a unit, a word)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ConfigError(
            f"{path}, row {row}, column '{column}': '{text}' is not a number (give the number alone, "
            "in the column's unit)"
        ) from None
    if cast is int:
        if value != int(value):
            raise ConfigError(f"{path}, row {row}, column '{column}': '{text}' is not a whole number")
        return int(value)
    return cast(value)
