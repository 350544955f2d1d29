"""The report page as a person sees it: rendered in headless Chromium, every image loads, nothing is empty;
the what-if table agrees with the filter's own rule; a run without patches says so loudly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_shard_helpers import make_dataset

from curation import filter as curation_filter
from curation import report, shard
from curation.reporting.gallery import what_if

CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
  const empty = [...document.querySelectorAll('section')].filter(s =>
      !s.querySelector('figure img, figure .missing, table td')).map(s => s.querySelector('h2').textContent);
  const blankCaptions = [...document.querySelectorAll('figcaption')].filter(c => !c.textContent.trim()).length;
  const pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify({images: imgs.length, broken, empty, blankCaptions});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    return found


def _browser(exe: str, url: str, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}", "--virtual-time-budget=15000"]
    return subprocess.run([exe, *flags, *extra, url], capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_run")
    info = make_dataset(root, n_images=6)
    shard.main(["--kept", str(info["kept"]), "--raw", str(info["raw"]), "--out", str(root / "shards"),
                "--patch", "64", "--flat-cell", "32", "--workers", "0", "--log-level", "WARNING"])
    out = root / "report"
    report.main(["--root", str(root), "--out", str(out), "--samples", "4", "--per-reason", "3"])
    return root, out


@pytest.mark.integration
def test_report_renders_in_chromium_with_every_image_loaded(rendered, tmp_path):
    exe = _chromium()
    _, out = rendered
    page = out / "_browser_check.html"
    page.write_text((out / "index.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _browser(exe, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="check">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, "the check script did not run: " + dom.stdout[-1000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] >= 10 and check["broken"] == [] and check["empty"] == [] and check["blankCaptions"] == 0
    shot = tmp_path / "report.png"
    result = _browser(exe, (out / "index.html").as_uri(), f"--screenshot={shot}", "--window-size=1400,2400")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (2400, 1400)
    non_white = (pixels < 240).any(axis=2).mean()
    assert non_white > 0.05 and pixels.std() > 20  # text, thumbnails and plots, not a blank page


def test_report_page_has_captions_whatif_and_reason_galleries(rendered):
    _, out = rendered
    page = (out / "index.html").read_text()
    assert "What if: images kept at other thresholds" in page
    assert "Dropped because niqe (1 image(s))" in page  # one gallery per single reason
    assert "Random kept images" in page and "1:1 centre crop" in page
    thumbs = sorted((out / "thumbs").glob("kept_*_crop.png"))
    assert thumbs and all(Image.open(t).size == (192, 192) or min(Image.open(t).size) < 192 for t in thumbs)
    assert max(Image.open(t).size[0] for t in (out / "thumbs").glob("kept_00?.png")) > 160  # large enough to judge
    assert "<b>img0" in page or "<b>dup0" in page or "<b>exif" in page  # readable names, not bare 5-px keys


def test_what_if_counts_agree_with_the_filter_rule(tmp_path):
    """Each what-if count equals the number of rows the filter's row-by-row rule keeps with that setting."""
    import dataclasses

    import pyarrow as pa

    from curation.thresholds import Thresholds

    rng = np.random.default_rng(3)
    rows = [{"key": f"k{i}", "status": "ok" if i % 7 else "decode_error", "width": int(rng.integers(300, 2000)),
             "height": int(rng.integers(300, 2000)), "niqe": float(rng.uniform(2, 9)),
             "brisque": float(rng.uniform(5, 70)), "nima": float("nan") if i % 11 == 0 else float(rng.uniform(3, 7))}
            for i in range(300)]
    rules = curation_filter.Rules(Thresholds.of({"niqe": 6.0, "brisque": 45.0, "nima": 4.5}), min_side=1024)
    entries = what_if(pa.Table.from_pylist(rows), rules)
    assert {e["setting"] for e in entries} == {"niqe", "brisque", "nima", "min_side"}
    for entry in entries:
        if entry["setting"] == "min_side":
            moved = dataclasses.replace(rules, min_side=entry["value"])
        else:
            moved = dataclasses.replace(rules, thresholds=Thresholds.of(
                {**rules.thresholds.as_dict(), entry["setting"]: entry["value"]}))
        assert entry["kept"] == sum(not moved.reasons(r) for r in rows), entry


def test_run_without_patches_warns_on_the_page(tmp_path):
    info = make_dataset(tmp_path, n_images=3)
    shard.main(["--kept", str(info["kept"]), "--raw", str(info["raw"]), "--out", str(tmp_path / "shards"),
                "--patch", "1024", "--flat-cell", "64", "--workers", "0", "--log-level", "WARNING"])
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["total_samples"] == 0
    report.main(["--root", str(tmp_path), "--out", str(tmp_path / "report"), "--samples", "2"])
    page = (tmp_path / "report" / "index.html").read_text()
    assert "class='warning'" in page and "produced NO patches" in page and "smaller than one 1024-px patch" in page
    assert "WARNING" in (tmp_path / "report" / "index.md").read_text()
    assert pq.read_table(info["kept"]).num_rows > 0 and os.path.exists(tmp_path / "report" / "index.html")
