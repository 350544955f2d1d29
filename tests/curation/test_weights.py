"""curation.weights: what is needed, where it is, install / fetch, and score's check before any worker."""

from __future__ import annotations

import pickle

import pytest
import torch
from test_score_support import TEST_NIMA_NAME, install_test_nima

from curation import score, weights
from curation.scoring.metrics import METRICS


@pytest.fixture()
def fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def test_check_reports_shipped_and_missing(fresh_home, capsys):
    st = {s.metric: s for s in weights.check(("niqe", "brisque", "nima"))}
    assert st["niqe"].present and st["niqe"].origin == "package data"
    assert st["brisque"].present and st["brisque"].origin == "package data"
    assert not st["nima"].present
    assert st["nima"].path == str(fresh_home / "hub" / "pyiqa" / METRICS["nima"].weight_file)
    assert weights.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "curation.weights install" in out and "--metrics niqe,brisque" in out


def test_score_stops_before_any_worker_when_weights_missing(fresh_home, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(SystemExit) as exc:
        score.main([str(raw), "--out", str(tmp_path / "scores"), "--workers", "1"])
    msg = str(exc.value)
    assert METRICS["nima"].weight_file in msg and "--metrics niqe,brisque" in msg
    assert not (tmp_path / "scores").exists()  # nothing started


def test_install_rejects_wrong_or_unsafe_files(fresh_home, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"params": {"fc.weight": torch.zeros(2, 2)}}, wrong)
    with pytest.raises(ValueError, match="do not fit"):
        weights.install(wrong, "nima")
    unsafe = tmp_path / "unsafe.pth"
    unsafe.write_bytes(pickle.dumps({"x": object()}))
    with pytest.raises(ValueError, match="weights_only"):
        weights.install(unsafe, "nima")
    with pytest.raises(SystemExit, match="does not exist"):
        weights.main(["install", str(tmp_path / "absent.pth"), "--metric", "nima"])
    assert not weights.status_of("nima").present


def test_installed_test_only_weights_are_labelled(tmp_path, capsys):
    path = install_test_nima(tmp_path)  # session TORCH_HOME (shared with the other score tests)
    st = weights.status_of("nima")
    assert st.present and st.origin == "pyiqa cache" and str(path) == st.path
    assert st.test_only and st.installed_from == TEST_NIMA_NAME
    assert weights.main(["check"]) == 0
    assert "TEST-ONLY" in capsys.readouterr().out


def test_fetch_without_network_is_a_clear_error(fresh_home, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    with pytest.raises(weights.MissingWeightsError, match="(?s)could not download .*curation.weights install"):
        weights.fetch(("nima",))
    assert not weights.status_of("nima").present  # no partial file left behind
    assert weights.fetch(("niqe",))[0].present  # shipped: nothing to download
