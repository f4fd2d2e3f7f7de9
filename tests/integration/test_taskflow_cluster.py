"""``@task.monid`` on a real scheduler: the TaskFlow example (mapped, deferrable, max_cost and
validate_input) run twice; every task instance is its own process, so the inspect answer reaches the
others through the shared Variable."""

from __future__ import annotations

import pytest

from tests.integration.cluster import AirflowCluster
from tests.integration.provider_support import ClusterEmulator

DAG_ID = "monid_taskflow"


@pytest.mark.integration
def test_taskflow_example_shares_one_inspect_between_processes(
    airflow_cluster: AirflowCluster, cluster_emulator: ClusterEmulator
) -> None:
    c, emu = airflow_cluster, cluster_emulator
    first = c.trigger_dag(DAG_ID)
    assert c.wait_dag_run(DAG_ID, first, timeout=180) == "success", c.observed_states(DAG_ID, first)
    assert c.xcom(DAG_ID, first, "report") == {"matched": ["John Doe"], "tweets": 3}
    assert "deferred" in c.observed_states(DAG_ID, first)["mentions"]
    assert len(emu.run_posts()) == 3  # two mapped enrichments and one scrape
    inspects = emu.count("POST", "/v1/inspect")
    assert inspects <= 3  # at most one per task instance, fewer when one found the other's Variable
    keys = [v["key"] for v in c._get_json(c.api, "/variables", params={"limit": 100})["variables"]]
    assert len([k for k in keys if k.startswith("monid_inspect_")]) >= 2  # one per endpoint

    second = c.trigger_dag(DAG_ID)
    assert c.wait_dag_run(DAG_ID, second, timeout=180) == "success", c.observed_states(DAG_ID, second)
    assert len(emu.run_posts()) == 6
    assert emu.count("POST", "/v1/inspect") == inspects  # three new processes, no new inspect call
