"""The official fine-tuning task mix: epoch composition, proportions over an epoch, the run record."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from tests.restoration_fixtures import make_train_sets
from training import finetune as ft
from training import restoration_data as rd
from training import task_mix as tm

OFFICIAL_SIZES = {"denoise": 5_144, "derain": 200, "dehaze": 72_135, "deblur": 2_103, "lowlight": 485}
SIGMAS = (15, 25, 50)


def _count_tasks(mix, start: int, n: int) -> Counter:
    rng = np.random.default_rng(0)
    return Counter(mix.draw(i, rng)[0] for i in range(start, start + n))


def test_official_composition_is_the_papers_epoch():
    comp = tm.official_composition(OFFICIAL_SIZES, ["denoise", "derain", "dehaze"], SIGMAS)
    assert comp.total == 142_431
    assert comp.task_samples() == {"denoise": 46_296, "derain": 24_000, "dehaze": 72_135}
    assert {t: round(f, 3) for t, f in comp.fractions().items()} == {"denoise": 0.325, "derain": 0.169, "dehaze": 0.506}
    five = tm.official_composition(OFFICIAL_SIZES, list(OFFICIAL_SIZES), SIGMAS)
    assert five.total == 142_431 + 2_103 * 5 + 485 * 20
    uni = tm.official_composition(OFFICIAL_SIZES, ["denoise", "derain", "dehaze"], SIGMAS, mix="uniform")
    assert uni.fractions() == {"denoise": 1 / 3, "derain": 1 / 3, "dehaze": 1 / 3}
    with pytest.raises(ValueError, match="no training files"):
        tm.official_composition({**OFFICIAL_SIZES, "derain": 0}, ["derain"], SIGMAS)


def test_official_mix_proportions_over_an_epoch():
    comp = tm.official_composition(OFFICIAL_SIZES, ["denoise", "derain", "dehaze"], SIGMAS)
    mix = tm.OfficialMix(comp, seed=3)
    assert _count_tasks(mix, 0, comp.total) == comp.task_samples()  # an aligned epoch: exact
    window = _count_tasks(mix, 50_000, comp.total)  # any epoch-long window: within 1 %
    for task, frac in comp.fractions().items():
        assert abs(window[task] / comp.total - frac) < 0.01
    # each file once per repeat, each sigma list complete; the order changes between epochs
    rng = np.random.default_rng(0)
    draws = [mix.draw(i, rng) for i in range(comp.total)]
    rain_items = Counter(item for task, item, _ in draws if task == "derain")
    assert set(rain_items.values()) == {120} and len(rain_items) == 200
    assert Counter(s for task, _, s in draws if task == "denoise") == {15.0: 15_432, 25.0: 15_432, 50.0: 15_432}
    assert [mix.draw(i, rng) for i in range(20)] != [mix.draw(comp.total + i, rng) for i in range(20)]
    uniform = _count_tasks(tm.UniformMix(["denoise", "derain", "dehaze"], OFFICIAL_SIZES), 0, 30_000)
    assert abs(uniform["derain"] / 30_000 - 1 / 3) < 0.01  # the old behaviour: derain ~2x its official share


def test_dataset_stream_follows_the_official_mix(tmp_path):
    sets = make_train_sets(tmp_path, n=4, size=(20, 20))
    src = rd.collect_train_sources(["denoise", "derain", "dehaze"], denoise_dirs=[str(sets["denoise"])],
                                   derain_dir=str(sets["derain"]), dehaze_dir=str(sets["dehaze"]))
    comp = tm.official_composition(src.sizes(), ["denoise", "derain", "dehaze"], SIGMAS)
    assert comp.total == 4 * 9 + 4 * 120 + 4
    ds = rd.TaskMixDataset(src, tasks=["denoise", "derain", "dehaze"], sigmas=SIGMAS, patch_size=8, seed=1,
                           mix=tm.make_mix(comp, tasks=["denoise", "derain", "dehaze"], sizes=src.sizes(), seed=1))
    codes = Counter(rd.TASKS[ds[i]["task"]] for i in range(comp.total))
    assert codes == comp.task_samples()
    a, b = ds[7], ds[7]
    assert (a["lq"] == b["lq"]).all()  # a pure function of (seed, index)


def test_finetune_records_epoch_composition(tmp_path):
    sets = make_train_sets(tmp_path / "data", n=3, size=(40, 40))
    out = tmp_path / "run"
    ft.main(["--out", str(out), "--tiny-model", "--max-steps", "2", "--batch-size", "2", "--patch-size", "16",
             "--num-workers", "0", "--no-progress", "--log-every", "1", "--ckpt-every", "100",
             "--denoise-dirs", str(sets["denoise"]), "--derain-dir", str(sets["derain"]),
             "--dehaze-dir", str(sets["dehaze"])])
    comp = json.loads((out / "epoch_composition.json").read_text())
    assert comp["mix"] == "official" and comp["epoch_samples"] == 3 * 9 + 3 * 120 + 3
    assert comp["task_samples_per_epoch"] == {"denoise": 27, "derain": 360, "dehaze": 3}
    data = json.loads((out / "finetune_data.json").read_text())
    assert data["epoch_samples"] == comp["epoch_samples"]
    cfg = (out / "finetune_config.yaml").read_text()
    assert "variant: l" in cfg and "amp: none" in cfg and "task_mix: official" in cfg
