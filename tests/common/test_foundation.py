"""Skeleton pieces: torchvision compatibility, config plumbing, atomic writes, raw-shard format."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.atomic import atomic_write_json
from common.cliconfig import parse_config, save_config
from curation import rawshards


def test_torchvision_imports_after_compat():
    code = (
        "from common.torchvision_compat import ensure_torchvision_importable as e; e(); "
        "import torchvision, timm; print('ok', torchvision.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


@dataclass
class _Cfg:
    src: str = field(metadata={"help": "input", "positional": True})
    out: str = field(default="o/", metadata={"help": "output"})
    steps: int = field(default=3, metadata={"help": "steps"})
    variants: tuple[str, ...] = field(default=("2,3,3,4", "4,6,6,8"), metadata={"help": "reuse vectors"})
    resume: bool = field(default=False, metadata={"help": "resume"})
    device: str | None = field(default=None, metadata={"help": "device"})


def test_parse_config_yaml_defaults_cli_wins(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("steps: 7\nout: from_yaml/\nvariants: ['1,1,1,1']\n")
    cfg = parse_config(_Cfg, ["in/", "--config", str(yml), "--out", "cli/"])
    assert cfg == _Cfg(src="in/", out="cli/", steps=7, variants=("1,1,1,1",), resume=False)
    save_config(cfg, tmp_path / "resolved.yaml")
    again = parse_config(_Cfg, ["in/", "--config", str(tmp_path / "resolved.yaml")])
    assert again == cfg


def test_parse_config_rejects_unknown_yaml_key(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("stepz: 7\n")
    with pytest.raises(SystemExit):
        parse_config(_Cfg, ["in/", "--config", str(yml)])


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a" / "x.json", {"b": 1})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"b": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def _write_shard(root, shard_id, keys_ok, keys_failed, truncate=False):
    tar_path, parquet_path, stats_path = rawshards.shard_paths(root, shard_id)
    with tarfile.open(tar_path, "w") as tar:
        for k in keys_ok:
            for name, data in ((f"{k}.jpg", b"\xff\xd8fakejpeg"), (f"{k}.json", json.dumps({"key": k}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    if truncate:
        data = tar_path.read_bytes()
        tar_path.write_bytes(data[:2500])  # mid-way through the third member
    rows = [{"key": k, "status": "success"} for k in keys_ok] + [{"key": k, "status": "failed_to_download"} for k in keys_failed]
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    stats_path.write_text("{}")


def test_rawshards_check_and_iterate(tmp_path):
    _write_shard(tmp_path, "00000", ["000000000", "000000001"], ["000000002"])
    _write_shard(tmp_path, "00001", ["000010000", "000010001", "000010002"], [], truncate=True)
    assert rawshards.list_complete_shards(tmp_path) == ["00000", "00001"]
    assert rawshards.check_shard(tmp_path, "00000") == (True, "ok")
    ok, reason = rawshards.check_shard(tmp_path, "00001")
    assert not ok and reason
    samples = list(rawshards.iter_raw_tar(tmp_path / "00000.tar"))
    assert [s.key for s in samples] == ["000000000", "000000001"]
    assert samples[0].meta == {"key": "000000000"} and samples[0].image.startswith(b"\xff\xd8")
    (tmp_path / "00000_stats.json").unlink()
    assert rawshards.list_complete_shards(tmp_path) == ["00001"]
