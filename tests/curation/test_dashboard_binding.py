"""The Dask dashboard has no login: a LocalCluster's listens on loopback only unless asked (issue 13, item 7)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

import psutil
import pytest

from common.cliconfig import parse_config
from curation.cluster import DEFAULT_DASHBOARD, dask_client


def _listening(proc: psutil.Process) -> list:
    return [c.laddr for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]


@pytest.mark.integration
def test_local_cluster_dashboard_and_workers_listen_on_loopback_only():
    me = psutil.Process()
    with dask_client(workers=1) as client:
        port = urlparse(client.dashboard_link).port
        dashboard = [a for a in _listening(me) if a.port == port]
        assert [a.ip for a in dashboard] == ["127.0.0.1"]
        worker_sockets = [a for child in me.children(recursive=True) for a in _listening(child)]
        assert worker_sockets and {a.ip for a in worker_sockets} == {"127.0.0.1"}


@pytest.mark.parametrize("module", ["download", "ingest", "score", "shard"])
def test_every_dask_command_defaults_to_a_loopback_dashboard_and_takes_the_flag(module, tmp_path):
    mod = __import__(f"curation.{module}", fromlist=["main"])
    config_cls = next(c for c in vars(mod).values()
                      if dataclasses.is_dataclass(c) and c.__module__ == mod.__name__ and c.__name__.endswith("Config"))
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    assert fields["dashboard_address"].default == DEFAULT_DASHBOARD
    assert DEFAULT_DASHBOARD.startswith("127.0.0.1:")
    required = [f for f in dataclasses.fields(config_cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    argv = []
    for f in required:
        argv += [str(tmp_path)] if f.metadata.get("positional") else [f"--{f.name.replace('_', '-')}", str(tmp_path)]
    cfg = parse_config(config_cls, argv + ["--dashboard-address", "0.0.0.0:8787"])
    assert cfg.dashboard_address == "0.0.0.0:8787"
