"""curation.query: read-only SQL over the tables that the shard test data and a real shard run produce."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_shard_helpers import make_dataset

from curation import query, shard


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("queryroot")
    info = make_dataset(root, n_images=6)
    decisions = pq.read_table(root / "decisions.parquet")
    (root / "scores").mkdir()
    for sid in ("00000", "00001"):  # scores/NNNNN.parquet, one per raw shard (curation.score's layout)
        part = decisions.filter(pc.equal(decisions.column("raw_shard"), sid))
        pq.write_table(part.drop_columns(["kept", "drop_reason"]), root / "scores" / f"{sid}.parquet")
    shard.main(["--kept", str(info["kept"]), "--raw", str(info["raw"]), "--out", str(root / "shards"),
                "--patch", "64", "--flat-cell", "32", "--workers", "0", "--log-level", "WARNING"])
    return root


def test_views_exist_for_the_tables_present(root):
    assert set(query.table_sources(root)) == {"raw", "scores", "decisions", "kept", "patches", "dropped_tiles"}
    counts = query.run_query("SELECT (SELECT count(*) FROM scores) AS s, (SELECT count(*) FROM decisions) AS d, "
                             "(SELECT count(*) FROM raw) AS r", root).to_pylist()[0]
    assert counts["s"] == counts["d"] == counts["r"] + 1  # the fixture has one scored row whose image is not in raw/
    assert query.table_sources(root / "nothing-here") == {}


def test_patches_per_source_and_join_with_kept(root, capsys):
    table = query.main(["SELECT source, count(*) AS patches FROM patches GROUP BY source", "--root", str(root)])
    n_patches = pq.read_table(sorted((root / "shards").glob("patches-*.parquet"))).num_rows
    assert table.to_pylist() == [{"source": "synthetic", "patches": n_patches}]
    assert "synthetic" in capsys.readouterr().out
    joined = query.run_query(
        "SELECT k.key, count(p.key) AS n, any_value(k.niqe) AS niqe FROM kept k LEFT JOIN patches p "
        "ON p.source_key = k.key GROUP BY k.key ORDER BY n DESC, k.key", root).to_pylist()
    by_key = {r["key"]: r["n"] for r in joined}
    assert by_key["img0000"] == 6 and by_key["dup0000"] == 0 and by_key["tiny0000"] == 0
    assert sum(by_key.values()) == n_patches
    urls = query.run_query("SELECT url, count(*) n FROM patches GROUP BY url ORDER BY n DESC LIMIT 1", root)
    assert urls.to_pylist()[0]["n"] == 6


def test_csv_and_parquet_outputs(root, tmp_path):
    sql = "SELECT key, box, flat_fraction FROM patches ORDER BY key"
    query.main([sql, "--root", str(root), "--csv", str(tmp_path / "p.csv"), "--parquet", str(tmp_path / "p.parquet")])
    csv = pacsv.read_csv(tmp_path / "p.csv").to_pylist()
    par = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert len(csv) == len(par) > 0
    assert csv[0]["box"] == str(par[0]["box"]) and csv[0]["key"] == par[0]["key"]


@pytest.mark.parametrize("sql", [
    "DROP VIEW patches", "CREATE TABLE t AS SELECT 1", "INSERT INTO t VALUES (1)",
    "COPY (SELECT 1) TO '/tmp/should_not_exist.csv'", "ATTACH 'x.db'", "SET lock_configuration = false",
    "SELECT 1; DROP VIEW kept", "DELETE FROM kept",
])
def test_non_read_only_statements_are_refused(root, sql):
    with pytest.raises(SystemExit, match="read-only|exactly one statement"):
        query.main([sql, "--root", str(root)])


def test_unknown_table_lists_the_views(root):
    with pytest.raises(SystemExit, match="views available under .*patches"):
        query.main(["SELECT * FROM nonexistent_table", "--root", str(root)])
