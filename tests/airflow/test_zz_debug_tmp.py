from tests.airflow.test_evidence_plugin import *  # noqa

def test_dbg(demo, server):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    with create_session() as session:
        XComModel.set(key="return_value", value={"a": 1}, dag_id="invarlock_on_demand", task_id="archive", run_id=demo["runs"]["ci"], map_index=20, serialize=False, session=session)
    client, tokens = server
    run_id = demo["runs"]["ci"]
    path = f"/api/v2/dags/invarlock_on_demand/dagRuns/{quote(run_id, safe='')}/taskInstances/archive/xcomEntries"
    r = client.post(path, json={"key": "return_value", "value": {"a": 2}, "map_index": 21}, headers={"Authorization": f"Bearer {tokens['user']}"})
    print(r.status_code, r.text)
