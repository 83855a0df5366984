"""The one place THCE reads and writes files: readers that answer in one line, writers that lose nothing.

Reading (`read_text`, `iter_jsonl`, `read_json`, `read_yaml`, `iter_parquet_rows`, `read_parquet_table`):
- a missing file, a directory given as a file and an unreadable file are each named as such;
- text is UTF-8; a byte-order mark is accepted (and dropped) everywhere; any other encoding is an error
  naming the line and byte;
- a malformed JSON line, a YAML error or a corrupt parquet file is one `UserError` naming the file and
  the line, record or row group;
- YAML aliases are capped (`MAX_YAML_NODES`), so a nested "billion laughs" file is refused at once
  instead of hanging whatever walks the loaded data later.

Writing (`atomic_file`, `write_atomically`, `write_json`, `write_jsonl`, `staged_directory`):
- every file is written to a unique temporary sibling (`.NAME.thce-tmp-PID-RANDOM`) and renamed into
  place, so a reader never sees half a file and two concurrent writers never share a temporary;
- `check_output` refuses an output that is an input (or a directory holding one), a directory where a
  file is expected, and a path under a file, before any work is done;
- a directory output (a dataset, a results side-folder) is built beside the target and swapped in only
  when the target is absent, empty, or a THCE output of the same kind (it holds our `MANIFEST`);
  anything else is refused, never deleted. Gates run on the staged copy before the swap;
- temporaries left by a killed THCE process (its PID no longer runs) are removed on the next write to
  the same directory.
Errors from the OS name the user's path, not the temporary one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from thce.utils.errors import UserError

TEMP_MARK = ".thce-tmp-"
MANIFEST = ".thce-manifest.json"
# What each kind of directory output held before THCE wrote manifests: a directory with this file and no
# manifest was written by an earlier THCE version, and is ours to replace too.
LEGACY_SIGNATURES = {
    "dataset": "dataset_metadata.json",
    "results": "predictions.jsonl",
    "model": "thce_config.yaml",
    "training": "thce_config.yaml",
}
# A stage config has a few hundred YAML nodes; one that expands to more is an alias bomb or a mistake.
MAX_YAML_NODES = 100_000

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------------
# Reading


def check_input_file(path: PathLike, what: str = "file") -> Path:
    """`path` as a Path if it is a readable file; otherwise a one-line `UserError` saying what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file")
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path}: permission denied")
    return path


def decode_utf8(data: bytes, path: PathLike, first_line: int = 1) -> str:
    """UTF-8 bytes as text, a leading byte-order mark dropped; a clear error naming line and byte if not."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data[: err.start].count(b"\n")
        raise UserError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the file as UTF-8"
        ) from err


def read_text(path: PathLike, what: str = "file") -> str:
    """A UTF-8 text file (BOM accepted); one-line errors for missing, directory, unreadable, not UTF-8."""
    path = check_input_file(path, what)
    return decode_utf8(_read_bytes(path), path)


def iter_jsonl(path: PathLike, what: str = "records file") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file; errors name the file and line."""
    path = check_input_file(path, what)
    try:
        handle = path.open("rb")
    except OSError as err:
        raise _os_error(err, path) from err
    with handle:
        for number, raw in enumerate(handle, 1):
            line = decode_utf8(raw, path, first_line=number)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno})") from err
            if not isinstance(record, dict):
                raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def read_jsonl(path: PathLike, what: str = "records file", limit: int | None = None) -> list[dict[str, Any]]:
    """The objects of a JSONL file (the first `limit` when given)."""
    records = []
    for _, record in iter_jsonl(path, what):
        if limit is not None and len(records) >= limit:
            break
        records.append(record)
    return records


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """A JSON document; errors name the file, line and column."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from err


def read_yaml(path: PathLike, what: str = "YAML file") -> Any:
    """A YAML document (safe loader, aliases capped); errors name the file and line."""
    path = Path(path)
    return load_yaml(read_text(path, what), str(path))


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML text safely: no Python objects, and at most `MAX_YAML_NODES` nodes after alias expansion."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{where}{line}: not valid YAML ({problem})") from err
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, where: str) -> None:
    """Count the nodes the document expands to (aliases counted at every use) without expanding it."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise UserError(f"{where}: a YAML alias refers to itself (recursive anchor)")
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise UserError(
                f"{where}: YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?); "
                "refusing to load it"
            )
        sizes[key] = total
        return total

    size(root)


def iter_parquet_rows(path: PathLike, what: str = "parquet file", batch_size: int = 4096) -> Iterator[dict]:
    """Rows of a parquet file as dicts, streamed; a corrupt file is one error naming it and the row group."""
    import pyarrow.parquet as pq

    path = check_input_file(path, what)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError ... for a file that is not parquet
        raise UserError(f"{path}: not a readable parquet file ({_first_line(err)})") from err
    for group in range(parquet.num_row_groups):
        try:
            batches = list(parquet.iter_batches(batch_size=batch_size, row_groups=[group]))
        except Exception as err:
            raise UserError(f"{path}: row group {group} is corrupt ({_first_line(err)})") from err
        for batch in batches:
            yield from batch.to_pylist()


def read_parquet_table(path: PathLike, what: str = "parquet file", columns: Sequence[str] | None = None):
    """A whole parquet file as a pyarrow Table; a corrupt file is one error naming it."""
    import pyarrow.parquet as pq

    path = check_input_file(path, what)
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except Exception as err:
        raise UserError(f"{path}: not a readable parquet file ({_first_line(err)})") from err


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise _os_error(err, path) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _os_error(err: OSError, path: PathLike) -> UserError:
    """An OSError as one line naming the user's path (not a temporary one)."""
    return UserError(f"{path}: {err.strerror or _first_line(err)}")


# ---------------------------------------------------------------------------------------------------
# Output paths


def check_output(
    path: PathLike,
    inputs: Iterable[PathLike | None] = (),
    what: str = "output",
    directory: bool = False,
) -> Path:
    """Refuse an output path that would destroy data or cannot be written, before any work is done.

    Refused: an output that is one of `inputs`; an output directory (`directory=True`, replaced as a
    whole) that holds an input; a directory where a file is expected (or a file where a directory is);
    a path under an existing file.
    """
    path = Path(path)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        if _same_path(path, source):
            raise UserError(f"{what} {path} is also an input; writing it would destroy the input")
        if directory and _is_inside(source, path):
            raise UserError(f"{what} {path} holds the input {source}; replacing it would destroy the input")
    if not directory and path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file path")
    if directory and path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; give a directory path")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{what} {path}: {parent} is a file, not a directory")
            break
    return path


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return a.resolve() == b.resolve()


def _is_inside(inner: Path, outer: Path) -> bool:
    return outer.resolve() in inner.resolve().parents


# ---------------------------------------------------------------------------------------------------
# Atomic files


def temporary_path(target: PathLike) -> Path:
    """A fresh temporary path beside `target`, unique to this process and call."""
    target = Path(target)
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def clean_stale_temporaries(directory: PathLike) -> list[Path]:
    """Remove the temporaries in `directory` left by THCE processes that no longer run; return them."""
    directory = Path(directory)
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or TEMP_MARK not in entry.name:
            continue
        pid = entry.name.rsplit(TEMP_MARK, 1)[1].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another process cleaned it first, or we may not: not our problem now
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _prepare_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise UserError(f"cannot write {target}: a parent path is a file, not a directory") from err
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror}") from err
    clean_stale_temporaries(target.parent)


@contextlib.contextmanager
def atomic_file(target: PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `target` for writing; on success it replaces `target`, on error it goes.

    `mode` is "w" (UTF-8 text) or "wb". Permission and space errors name `target`.
    """
    target = Path(target)
    if target.is_dir():
        raise UserError(f"cannot write {target}: it is a directory")
    _prepare_parent(target)
    tmp = temporary_path(target)
    try:
        handle = open(tmp, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115 (closed below)
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror}") from err
    try:
        with handle:
            yield handle
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {target}: {err.strerror or _first_line(err)}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(target: PathLike, data: bytes | str) -> Path:
    """Write bytes or UTF-8 text to `target` through a temporary sibling: a reader never sees half a file."""
    target = Path(target)
    with atomic_file(target, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return target


def write_json(target: PathLike, data: Any, indent: int | None = 2) -> Path:
    """Write `data` as JSON (UTF-8, non-ASCII kept, trailing newline), atomically."""
    return write_atomically(target, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl(target: PathLike, rows: Iterable[Any]) -> int:
    """Write one JSON object a line, atomically; return the number of lines."""
    count = 0
    with atomic_file(target) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# ---------------------------------------------------------------------------------------------------
# Directory outputs


def check_replaceable_directory(target: PathLike, kind: str, what: str = "output directory") -> Path:
    """Refuse (before any work) a directory output that exists and is not a THCE output of `kind`."""
    target = Path(target)
    if not target.exists():
        return target
    if not target.is_dir():
        raise UserError(f"{what} {target} is a file; give a directory path")
    if is_ours(target, kind) or not any(target.iterdir()):
        return target
    raise UserError(
        f"{what} {target} exists and was not written by THCE as a {kind} (no {MANIFEST}); "
        "THCE will not delete it: remove it yourself or choose another path"
    )


def is_ours(directory: PathLike, kind: str) -> bool:
    """True if THCE wrote `directory` as a `kind` output (its manifest says so, or, from before manifests,
    it holds that kind's signature file)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        signature = LEGACY_SIGNATURES.get(kind)
        return (
            signature is not None
            and (directory / signature).is_file()
            and not (directory / MANIFEST).exists()
        )
    return isinstance(manifest, dict) and manifest.get("kind") == kind


def remove_directory(target: PathLike, kind: str, what: str = "output directory") -> None:
    """Delete a directory output that THCE wrote as `kind` (what `--force` removes); refuse anything else."""
    target = Path(target)
    if not target.exists():
        return
    check_replaceable_directory(target, kind, what)
    shutil.rmtree(target)


def write_manifest(directory: PathLike, kind: str) -> None:
    """Mark `directory` as a THCE output of `kind`, so a later run may replace it."""
    from thce import __version__

    (Path(directory) / MANIFEST).write_text(
        json.dumps({"kind": kind, "thce_version": __version__}) + "\n", encoding="utf-8"
    )


@contextlib.contextmanager
def staged_directory(target: PathLike, kind: str, what: str = "output directory") -> Iterator[Path]:
    """Build a directory output beside `target`; swap it in when the block ends without an exception.

    The body writes into the yielded staging directory and may check it (a quality gate) before the swap:
    raising leaves `target` exactly as it was. `target` is replaced only if it is absent, empty or a
    THCE output of `kind` (checked before and again at the swap).
    """
    target = Path(target)
    check_replaceable_directory(target, kind, what)
    _prepare_parent(target)
    staging = temporary_path(target)
    try:
        staging.mkdir()
    except OSError as err:
        raise UserError(f"cannot write {target}: {err.strerror}") from err
    try:
        yield staging
        write_manifest(staging, kind)
        check_replaceable_directory(target, kind, what)
        old = temporary_path(target) if target.exists() else None
        if old is not None:
            target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            if old is not None:
                old.rename(target)  # put the previous output back before failing
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
