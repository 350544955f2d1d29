"""curation.query's sandbox: user SQL reads the run's tables and nothing else, writes nothing, and one
damaged parquet does not stop every query (issue 13, items 1 and 11)."""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import query


@pytest.fixture()
def run(tmp_path):
    """A run folder with raw/ (two shards) and kept.parquet, plus a secret file beside (outside) it."""
    root = tmp_path / "run"
    (root / "raw").mkdir(parents=True)
    pq.write_table(pa.table({"key": ["a", "b"], "status": ["success"] * 2}), root / "raw" / "00000.parquet")
    pq.write_table(pa.table({"key": ["c"], "status": ["success"]}), root / "raw" / "00001.parquet")
    pq.write_table(pa.table({"key": ["a"], "niqe": [4.0]}), root / "kept.parquet")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me\n")
    return root, secret


def _refused(sql: str, root) -> str:
    with pytest.raises(SystemExit) as info:
        query.main([sql, "--root", str(root)])
    return str(info.value)


def test_explain_analyze_copy_cannot_write_anywhere(run, tmp_path):
    root, _ = run
    before = (root / "kept.parquet").read_bytes()
    for target in (tmp_path / "out.csv", root / "kept.parquet"):
        msg = _refused(f"EXPLAIN ANALYZE COPY (SELECT 42) TO '{target}' (FORMAT csv, USE_TMP_FILE false)", root)
        assert "COPY" in msg
    msg = _refused(f"explain /* hidden */ analyze\n-- c\nCOPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", root)
    assert "COPY" in msg
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.csv").exists()
    assert (root / "kept.parquet").read_bytes() == before


def test_explain_analyze_create_table_is_refused(run):
    root, _ = run
    assert "CREATE" in _refused("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", root)
    assert "CREATE" in _refused("EXPLAIN (FORMAT json) CREATE TABLE t AS SELECT 1", root)


def test_plain_explain_and_explain_analyze_of_a_select_still_work(run):
    root, _ = run
    assert query.run_query("EXPLAIN SELECT count(*) FROM raw", root).num_rows >= 1
    assert query.run_query("EXPLAIN ANALYZE SELECT * FROM kept", root).num_rows >= 1


@pytest.mark.parametrize("reader", ["read_text('{p}')", "read_csv('{p}')", "read_blob('{p}')",
                                    "glob('{d}/*')", "glob('/root/*')", "read_text('/etc/hostname')",
                                    "read_parquet('{d}/run/*.parquet')"])
def test_table_functions_cannot_read_outside_the_runs_tables(run, reader):
    root, secret = run
    sql = "SELECT * FROM " + reader.format(p=secret, d=secret.parent)
    msg = _refused(sql, root)
    assert "disabled by configuration" in msg or "reads only the run's tables" in msg


@pytest.mark.parametrize("sql", ["SET enable_external_access = true", "SET lock_configuration = false",
                                 "ATTACH 'other.db'", "INSTALL httpfs", "LOAD httpfs",
                                 "SELECT * FROM duckdb_settings(); SET enable_external_access=true"])
def test_configuration_attach_and_extensions_are_refused(run, sql):
    assert "read-only" in _refused(sql, run[0]) or "exactly one statement" in _refused(sql, run[0])


def test_duckdb_itself_refuses_even_when_the_statement_check_is_bypassed(run, tmp_path):
    """Defence in depth: the connection alone (no statement check) blocks files, config and writes."""
    root, secret = run
    work = tmp_path / "work"
    work.mkdir()
    con, sources = query.connect(root, work)
    try:
        assert sorted(sources) == ["kept", "raw"]
        assert con.execute("SELECT count(*) FROM raw").fetchone()[0] == 3
        attacks = [f"COPY (SELECT 1) TO '{tmp_path / 'y.csv'}'", f"SELECT * FROM read_text('{secret}')",
                   f"SELECT * FROM glob('{tmp_path}/*')", "ATTACH 'z.db'", "INSTALL httpfs", "LOAD httpfs",
                   "SET enable_external_access = true", "CREATE TABLE t AS SELECT 1", "DROP VIEW raw"]
        for sql in attacks:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert con.execute("SELECT current_setting('enable_external_access')").fetchone()[0] is False
    finally:
        con.close()
    assert not (tmp_path / "y.csv").exists() and not (root / "z.db").exists()


def test_a_corrupt_parquet_is_skipped_with_a_warning_naming_it(run, caplog):
    root, _ = run
    bad = root / "raw" / "00002.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    (root / "decisions.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="curation.query"):
        table = query.run_query("SELECT key FROM raw ORDER BY key", root)
    assert table.column("key").to_pylist() == ["a", "b", "c"]
    assert str(bad) in caplog.text and "decisions.parquet" in caplog.text
    assert query.run_query("SELECT count(*) AS n FROM kept", root).to_pylist() == [{"n": 1}]
