"""curation.report writes its plots, grids and index files from small real tables and shards."""

from __future__ import annotations

import pytest
from PIL import Image
from test_shard_helpers import make_dataset

from curation import query, report, shard


def test_report_writes_plots_grids_and_index(tmp_path):
    info = make_dataset(tmp_path, n_images=6)
    shard.main(["--kept", str(info["kept"]), "--raw", str(info["raw"]), "--out", str(tmp_path / "shards"),
                "--patch", "64", "--flat-cell", "32", "--workers", "0", "--log-level", "WARNING"])
    out = tmp_path / "report"
    figures = report.main(["--root", str(tmp_path), "--out", str(out), "--samples", "4", "--thumb", "64"])
    expected = {"metric_niqe", "metric_brisque", "metric_nima", "reasons",
                "flat_fraction", "patches_kept", "patches_dropped", "flat_overlays"}
    assert set(figures) == expected
    for path in figures.values():
        with Image.open(path) as img:
            assert img.format == "PNG" and min(img.size) > 50
    md = (out / "index.md").read_text()
    html = (out / "index.html").read_text()
    for path in figures.values():
        assert f"({path.name})" in md and f"src='{path.name}'" in html
    assert "niqe': 6.0" in md  # thresholds read from filter_stats.json
    assert "| images dropped: niqe | 1 |" in md and "| patches kept |" in md


def test_thresholds_flag_and_stats_parsing(tmp_path):
    assert report.parse_thresholds("niqe=5, nima=4.5") == {"niqe": 5.0, "nima": 4.5}
    with pytest.raises(ValueError):
        report.parse_thresholds("sharpness=3")
    (tmp_path / "s.json").write_text('{"thresholds": {"niqe": {"max": 7}, "nima": {"min": 4}, "brisque": 35}}')
    assert report.thresholds_from_stats(tmp_path / "s.json") == {"niqe": 7.0, "nima": 4.0, "brisque": 35.0}
    assert report.thresholds_from_stats(tmp_path / "absent.json") == {}


@pytest.mark.parametrize("module", [report, query])
def test_a_root_that_does_not_exist_is_refused_with_exit_2(module, tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    args = ["--root", str(missing), "--out", str(tmp_path / "rep")] if module is report else ["SELECT 1", "--root", str(missing)]
    with pytest.raises(SystemExit) as info:
        module.main(args)
    assert info.value.code == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()
