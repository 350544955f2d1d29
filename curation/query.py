"""Read-only SQL over every curation stage's parquet tables: ``python -m curation.query "SQL" [--root DIR]``.

An in-memory DuckDB connection gets one view per table found under ``--root`` (missing ones are left
out and listed):

- ``raw``: ``raw/*.parquet`` (one row per attempted download / ingested file)
- ``scores``: ``scores/*.parquet`` (one row per raw row, metric scores)
- ``decisions``: ``decisions.parquet`` (every scored row, ``kept`` + ``drop_reason``)
- ``kept``: ``kept.parquet`` (rows that passed the filter)
- ``patches``: ``shards/patches-*.parquet`` (one row per patch in the WebDataset shards)
- ``dropped_tiles``: ``shards/dropped-*.parquet`` (tiles dropped as flat, with their boxes)

decisions/kept are looked up at ``ROOT/`` and then ``ROOT/filter/``. Only SELECT-type statements
(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN of one of those) run; anything else is refused.

The sandbox (docs/security.md): the statement check above, then DuckDB itself confines the query. The
views live in a throw-away database file reopened read-only; ``allowed_paths`` lists exactly the
run's parquet files, ``enable_external_access=false`` refuses every other file (read_text, read_csv,
glob, ATTACH, COPY ... TO, INSTALL/LOAD), extension auto-loading is off, spills go to a private temp
folder, and ``lock_configuration=true`` keeps the SQL from undoing any of it. A parquet file whose
footer cannot be read is left out of its view with a warning naming it, so one damaged file does not
stop every query.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from common.cliconfig import parse_config
from common.outputerrors import exit_on_write_error

_LOG = logging.getLogger("curation.query")
READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# "EXPLAIN [ANALYZE] [(options)]" with any comments / whitespace around: what is left is checked again.
_SPACE = r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
_EXPLAIN_PREFIX = re.compile(rf"^{_SPACE}EXPLAIN\b{_SPACE}(?:ANALY[SZ]E\b{_SPACE})?(?:\(\s*FORMAT\b[^()]*\){_SPACE})?",
                             re.IGNORECASE | re.DOTALL)


class QueryRefused(ValueError):
    """A statement that is not read-only (or not exactly one statement)."""


@dataclass
class QueryConfig:
    """Run one read-only SQL query over the curation tables and print the result (or save it)."""

    sql: str = field(metadata={"positional": True, "help": "one SELECT-type SQL statement over the views "
                               "raw, scores, decisions, kept, patches, dropped_tiles"})
    root: str = field(default=".", metadata={"help": "pipeline folder holding raw/, scores/, kept.parquet, decisions.parquet, shards/ (default .)"})
    csv: str | None = field(default=None, metadata={"help": "write the result to this CSV file instead of printing"})
    parquet: str | None = field(default=None, metadata={"help": "write the result to this parquet file instead of printing"})
    max_rows: int = field(default=50, metadata={"help": "rows printed to the terminal; files get every row (default 50)"})


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def table_sources(root: str | os.PathLike) -> dict[str, str]:
    """View name -> parquet path or glob, for the tables that exist under ``root``."""
    r = Path(root).resolve()
    found: dict[str, str] = {}
    globs = {"raw": (r / "raw", "*.parquet"), "scores": (r / "scores", "*.parquet"),
             "patches": (r / "shards", "patches-*.parquet"), "dropped_tiles": (r / "shards", "dropped-*.parquet")}
    for name, (folder, pattern) in globs.items():
        if folder.is_dir() and any(folder.glob(pattern)):
            found[name] = str(folder / pattern)
    for name in ("decisions", "kept"):
        path = _first_existing(r / f"{name}.parquet", r / "filter" / f"{name}.parquet")
        if path is not None:
            found[name] = str(path)
    return dict(sorted(found.items()))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def readable_files(pattern: str) -> tuple[list[str], list[str]]:
    """(files whose parquet footer reads, files that do not) for one table's path or glob."""
    path = Path(pattern)
    files = sorted(str(p) for p in path.parent.glob(path.name)) if "*" in path.name else [str(path)]
    good, bad = [], []
    for f in files:
        try:
            pq.read_metadata(f)
            good.append(f)
        except (OSError, ValueError, pa.ArrowException) as exc:
            _LOG.warning("skipping unreadable parquet %s: %s", f, str(exc).splitlines()[0][:200])
            bad.append(f)
    return good, bad


def _sandboxed(db_path: Path, spill: Path, allowed: list[str]) -> duckdb.DuckDBPyConnection:
    """Reopen the view database read-only with file access confined to ``allowed``, settings locked."""
    con = duckdb.connect(str(db_path), read_only=True, config={
        "autoinstall_known_extensions": False, "autoload_known_extensions": False,
        "allow_community_extensions": False, "temp_directory": str(spill)})
    con.execute("SET allowed_paths = ?", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def connect(root: str | os.PathLike, workdir: str | os.PathLike) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """Sandboxed read-only DuckDB with one view per existing table (``workdir``: private, throw-away)."""
    work = Path(workdir)
    db_path, spill = work / "views.duckdb", work / "spill"
    spill.mkdir(exist_ok=True)
    sources, allowed = {}, []
    with duckdb.connect(str(db_path)) as build:
        for name, pattern in table_sources(root).items():
            files, _bad = readable_files(pattern)
            if not files:
                continue
            listed = "[" + ", ".join(_quote(f) for f in files) + "]"
            build.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({listed}, union_by_name=true)")
            sources[name], allowed = pattern, allowed + files
    return _sandboxed(db_path, spill, allowed), sources


def check_read_only(sql: str) -> None:
    """Raise :class:`QueryRefused` unless ``sql`` is exactly one SELECT-type statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"cannot parse the SQL: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in READ_ONLY_TYPES:
        raise QueryRefused(f"refusing a {kind.name} statement: curation.query is read-only "
                           "(SELECT / WITH / DESCRIBE / SHOW / SUMMARIZE / EXPLAIN only)")
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs its statement: check that one too
        inner, n = _EXPLAIN_PREFIX.subn("", statements[0].query, count=1)
        if not n or not inner.strip():
            raise QueryRefused("cannot tell which statement this EXPLAIN wraps; refusing it")
        check_read_only(inner)


def run_query(sql: str, root: str | os.PathLike = ".") -> pa.Table:
    """Result of a read-only query as a pyarrow Table."""
    check_read_only(sql)
    workdir = tempfile.mkdtemp(prefix="curation-query-")
    try:
        con, sources = connect(root, workdir)
        try:
            result = con.execute(sql)
            fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
            return fetch()
        except duckdb.CatalogException as exc:
            raise ValueError(f"{exc}\nviews available under {Path(root).resolve()}: "
                             f"{', '.join(sources) or 'none'}") from exc
        except duckdb.PermissionException as exc:
            raise QueryRefused(f"{exc}: curation.query reads only the run's tables") from exc
        finally:
            con.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _flatten_nested(table: pa.Table) -> pa.Table:
    for i, col in enumerate(table.schema):
        if pa.types.is_nested(col.type):
            text = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, col.name, pa.array(text, pa.string()))
    return table


def _write_atomic(table: pa.Table, path: str, kind: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if kind == "csv":  # nested columns (box) are written as JSON text: "[x0, y0, x1, y1]"
            _flatten_nested(table).to_pandas().to_csv(tmp, index=False)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def format_table(table: pa.Table, max_rows: int) -> str:
    df = table.slice(0, max_rows).to_pandas()
    text = df.to_string(index=False, max_colwidth=60)
    if table.num_rows > max_rows:
        text += f"\n... {table.num_rows - max_rows} more row(s) ({table.num_rows} in total; use --csv/--parquet for all)"
    return text + f"\n({table.num_rows} row(s))"


def main(argv: list[str] | None = None) -> pa.Table:
    cfg = parse_config(QueryConfig, argv)
    if not Path(cfg.root).is_dir():
        print(f"curation.query: --root {cfg.root} is not a folder", file=sys.stderr)
        raise SystemExit(2)
    try:
        table = run_query(cfg.sql, cfg.root)
    except QueryRefused as exc:
        raise SystemExit(f"curation.query: {exc}") from exc
    except (ValueError, duckdb.Error) as exc:
        raise SystemExit(f"curation.query: query failed: {exc}") from exc
    for path, kind in ((cfg.csv, "csv"), (cfg.parquet, "parquet")):
        if path:
            with exit_on_write_error("curation.query", Path(path).parent):
                _write_atomic(table, path, kind)
            print(f"wrote {table.num_rows} row(s) to {path}")
    if not cfg.csv and not cfg.parquet:
        sys.stdout.write(format_table(table, cfg.max_rows) + "\n")
    return table


if __name__ == "__main__":
    main()
