"""The demo end to end in its smallest setting: every stage really runs; artefacts exist and agree."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import demo as pipeline


def _rows(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("[0-9]*.parquet")) for r in pq.read_table(f).to_pylist()]


SMALL = ["--demo", "--sample", "small", "--steps", "8", "--finetune-steps", "6", "--batch-size", "4", "--workers", "2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    summary = pipeline.main([*SMALL, "--out", str(out)])
    summary["_on_disk"] = json.loads((out / "summary.json").read_text())  # before any rerun test rewrites it
    return out, summary


def test_summary_lists_every_stage_with_existing_artefacts(demo):
    out, summary = demo
    on_disk = summary["_on_disk"]
    assert [s["stage"] for s in on_disk["stages"]] == list(pipeline.STAGES)
    assert on_disk["stages"] == json.loads(json.dumps(summary["stages"]))
    for rec in on_disk["stages"]:
        assert rec["seconds"] >= 0 and rec["skipped"] is False
        for label, path in rec["artefacts"].items():
            assert Path(path).exists(), f"{rec['stage']}: {label} missing at {path}"
    assert (out / "report" / "index.html").is_file() and (out / "report" / "index.md").is_file()


def test_download_really_ran_with_a_visible_failure(demo):
    out, _ = demo
    rows = _rows(out / "raw")
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    statuses = sorted(r["status"] for r in by_source["laion-hr"])
    assert statuses == ["failed_to_download", "success", "success"]
    assert all(r["url"].startswith("http://127.0.0.1:") for r in by_source["laion-hr"])
    assert [r["status"] for r in by_source["skimage-local"]] == ["success"]


def test_scores_use_only_metrics_with_weights(demo):
    out, summary = demo
    metrics = summary["metrics"]
    assert {"niqe", "brisque"} <= set(metrics)
    rows = _rows(out / "scores")
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3 and any(r["status"] == "download_failed" for r in rows)
    for r in ok:
        assert r["niqe"] is not None and r["brisque"] is not None
        assert (r["nima"] is not None) == ("nima" in metrics)  # never invented


def test_shards_agree_with_manifest_and_kept_table(demo):
    out, _ = demo
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["patch_size"] == 128 and manifest["total_samples"] > 0
    total = 0
    kept_sha = {r["sha256"] for r in pq.read_table(out / "kept.parquet").to_pylist()}
    for entry in manifest["shards"]:
        with tarfile.open(out / "shards" / entry["name"]) as tar:
            names = tar.getnames()
            pngs = [n for n in names if n.endswith(".png")]
            assert len(pngs) == entry["samples"] == sum(n.endswith(".json") for n in names)
            meta = json.load(tar.extractfile(next(n for n in names if n.endswith(".json"))))
            with Image.open(io.BytesIO(tar.extractfile(pngs[0]).read())) as img:
                assert img.size == (128, 128)
        assert meta["source_sha256"] in kept_sha
        table = pq.read_table((out / "shards" / entry["name"]).with_suffix(".parquet"))
        assert table.num_rows == entry["samples"]
        total += entry["samples"]
    assert total == manifest["total_samples"]


def test_checkpoint_loads_and_loss_recorded(demo):
    from dynet_model.checkpoint import load_model

    out, summary = demo
    model, cfg, _ = load_model(out / "train" / "model_final.safetensors")
    assert cfg.arch == "dynet" and sum(p.numel() for p in model.parameters()) > 0
    loss = next(s for s in summary["stages"] if s["stage"] == "pretrain")["info"]["loss"]
    assert loss["records"] >= 2 and loss["first_loss"] > 0 and loss["last_loss"] > 0


def test_evaluation_json_has_expected_columns(demo):
    out, _ = demo
    for name in ("network", "identity"):
        res = json.loads((out / "eval" / f"{name}.json").read_text())
        col = res["columns"]["BSD68 σ25"]
        assert col["n"] == 1 and {"psnr", "ssim", "seconds_per_image", "per_image"} <= set(col)
        assert [r["name"] for r in col["per_image"]] == ["camera"]
        assert 5 < col["psnr"] < 60
    identity = json.loads((out / "eval" / "identity.json").read_text())
    assert identity["model"] == "identity"


def test_restored_image_matches_input_size(demo):
    _, summary = demo
    rec = next(s for s in summary["stages"] if s["stage"] == "restore")
    src, dst = Path(rec["artefacts"]["restore input"]), Path(rec["artefacts"]["restored image"])
    with Image.open(src) as a, Image.open(dst) as b:
        assert a.size == b.size and b.mode == "RGB"


def test_rerun_skips_finished_stages(demo, capsys):
    out, first = demo
    t0 = time.perf_counter()
    again = pipeline.main([*SMALL, "--out", str(out)])
    assert time.perf_counter() - t0 < 30
    assert all(s["skipped"] for s in again["stages"])
    assert [s["artefacts"] for s in again["stages"]] == [s["artefacts"] for s in first["stages"]]
    assert "skipped" in capsys.readouterr().out


def test_interrupted_stage_resumes_through_its_command(demo):
    out, first = demo
    (out / ".stages" / "shard.json").unlink()  # as if the run had stopped inside the shard stage
    (out / ".stages" / "report.json").unlink()
    again = pipeline.main([*SMALL, "--out", str(out)])
    redone = {s["stage"]: s for s in again["stages"] if not s["skipped"]}
    assert set(redone) == {"shard", "report"}
    old = next(s for s in first["stages"] if s["stage"] == "shard")
    assert redone["shard"]["info"] == old["info"]  # curation.shard skipped its complete shards: same output


def test_rerun_with_other_settings_is_refused(demo):
    out, _ = demo
    with pytest.raises(SystemExit, match="different settings"):
        pipeline.main(["--demo", "--sample", "small", "--steps", "9", "--batch-size", "4", "--out", str(out)])


def test_without_demo_flag_explains(tmp_path):
    with pytest.raises(SystemExit, match="--demo"):
        pipeline.main(["--out", str(tmp_path / "x")])


def test_summary_reports_heldout_psnr_of_the_finetuned_model(demo):
    out, summary = demo
    held = summary["_on_disk"]["heldout_psnr"]
    for name in ("network", "identity"):
        res = json.loads((out / "eval" / f"{name}.json").read_text())
        assert held[name] == pytest.approx(res["columns"]["BSD68 σ25"]["psnr"])
    tuned = next(s for s in summary["stages"] if s["stage"] == "finetune")
    assert Path(tuned["artefacts"]["fine-tuned model"]).is_file()
    argv = next(s for s in summary["stages"] if s["stage"] == "evaluate")["argv"]
    assert argv[argv.index("--checkpoint") + 1] == str(out / "finetune" / "model_final.safetensors")
