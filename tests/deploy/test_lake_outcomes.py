"""The outcomes table in the stack: a Glue Iceberg table beside the predictions, where the service looks for it."""

from __future__ import annotations

from aws_cdk.assertions import Template

from leadscore.config import Settings
from leadscore.lake.schema import PARTITION_KEYS
from leadscore.outcomes.table import OUTCOME_SCHEMA, outcomes_table_config
from tests.deploy.test_stacks import glue_table, iceberg_table_input, lake_bucket_id, render


def test_the_outcomes_table_is_an_iceberg_table_beside_the_predictions(dev: Template) -> None:
    """lead_outcomes_dev in leadscore_dev, at <lake bucket>/lead_outcomes_dev: where the service derives it."""
    table = glue_table(dev, "lead_outcomes_dev")
    assert table["DatabaseName"] == "leadscore_dev"
    location = render(iceberg_table_input(dev, "lead_outcomes_dev")["Location"])
    assert location == f"s3://<{lake_bucket_id(dev)}>/lead_outcomes_dev"
    service = outcomes_table_config(Settings(env="dev", lake_catalog="glue", lake_uri="s3://b/lead_score_dev"))
    assert (service.name, service.location) == ("lead_outcomes_dev", "s3://b/lead_outcomes_dev")


def test_the_outcomes_schema_is_the_services_with_its_required_fields(dev: Template) -> None:
    """Fields are OUTCOME_SCHEMA in order, ids from 1; outcome_id, lead_id and the times are required."""
    table_input = iceberg_table_input(dev, "lead_outcomes_dev")
    fields = table_input["Schema"]["Fields"]
    assert [f["Name"] for f in fields] == OUTCOME_SCHEMA.names
    assert [f["Id"] for f in fields] == list(range(1, len(OUTCOME_SCHEMA) + 1))
    required = {f["Name"] for f in fields if f["Required"]}
    assert required == {f.name for f in OUTCOME_SCHEMA if not f.nullable}
    assert {"outcome_id", "lead_id", "occurred_at"} <= required
    ids = {f["Name"]: f["Id"] for f in fields}
    assert [(f["Name"], f["SourceId"]) for f in table_input["PartitionSpec"]["Fields"]] == [
        (key, ids[key]) for key in PARTITION_KEYS
    ]
