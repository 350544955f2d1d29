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
(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) run; anything else is refused.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from common.cliconfig import parse_config

_LOG = logging.getLogger("curation.query")
READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


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


def connect(root: str | os.PathLike) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """In-memory DuckDB with one view per existing table; configuration locked afterwards."""
    con = duckdb.connect(":memory:")
    sources = table_sources(root)
    for name, path in sources.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)}, union_by_name=true)")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET lock_configuration = true")
    return con, sources


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


def run_query(sql: str, root: str | os.PathLike = ".") -> pa.Table:
    """Result of a read-only query as a pyarrow Table."""
    check_read_only(sql)
    con, sources = connect(root)
    try:
        result = con.execute(sql)
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
        return fetch()
    except duckdb.CatalogException as exc:
        raise ValueError(f"{exc}\nviews available under {Path(root).resolve()}: {', '.join(sources) or 'none'}") from exc
    finally:
        con.close()


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
    if kind == "csv":  # nested columns (box) are written as JSON text: "[x0, y0, x1, y1]"
        _flatten_nested(table).to_pandas().to_csv(tmp, index=False)
    else:
        pq.write_table(table, tmp)
    os.replace(tmp, target)


def format_table(table: pa.Table, max_rows: int) -> str:
    df = table.slice(0, max_rows).to_pandas()
    text = df.to_string(index=False, max_colwidth=60)
    if table.num_rows > max_rows:
        text += f"\n... {table.num_rows - max_rows} more row(s) ({table.num_rows} in total; use --csv/--parquet for all)"
    return text + f"\n({table.num_rows} row(s))"


def main(argv: list[str] | None = None) -> pa.Table:
    cfg = parse_config(QueryConfig, argv)
    try:
        table = run_query(cfg.sql, cfg.root)
    except QueryRefused as exc:
        raise SystemExit(f"curation.query: {exc}") from exc
    except (ValueError, duckdb.Error) as exc:
        raise SystemExit(f"curation.query: query failed: {exc}") from exc
    if cfg.csv:
        _write_atomic(table, cfg.csv, "csv")
        print(f"wrote {table.num_rows} row(s) to {cfg.csv}")
    if cfg.parquet:
        _write_atomic(table, cfg.parquet, "parquet")
        print(f"wrote {table.num_rows} row(s) to {cfg.parquet}")
    if not cfg.csv and not cfg.parquet:
        sys.stdout.write(format_table(table, cfg.max_rows) + "\n")
    return table


if __name__ == "__main__":
    main()
