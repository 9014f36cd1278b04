"""config/alerts.yaml: rules and destinations checked at load, each problem naming the file
and the key; kinds that are not known are refused, never accepted and ignored."""

from __future__ import annotations

from typing import Any

from sync_pipeline.config.alerts import AlertKind, WebhookDestination
from sync_pipeline.config.loader import load_config
from tests.unit.config.conftest import ENV, ConfigTree
from tests.unit.config.test_examples import CONFIG_DIR, SANDBOX_ENV
from workers.beat import alert_schedule

WEBHOOK = {"url": "https://ops.example.com/hook", "secret_env": "ALERT_SECRET"}


def alerts(**rule: Any) -> dict[str, Any]:
    return {
        "destinations": {"ops": {"webhook": WEBHOOK}},
        "rules": {"down": {"kind": "vendor_down", "notify": ["ops"], **rule}},
    }


def test_given_the_shipped_config_then_its_alerts_load_and_post_to_the_sandbox_group() -> None:
    config = load_config(CONFIG_DIR, SANDBOX_ENV)

    rules = config.alerts.rules
    assert rules["oa_down"].kind is AlertKind.VENDOR_DOWN
    assert rules["oa_down"].for_s == 60
    group = config.alerts.destination("ops").group
    assert group is not None
    assert group.connector == "sandbox_feishu"


def test_given_no_alerts_file_then_there_are_no_rules(tree: ConfigTree) -> None:
    tree.flow("f")

    assert tree.load().alerts.all_rules == ()


def test_given_a_webhook_destination_then_it_keeps_the_variables_name_not_its_value(
    tree: ConfigTree,
) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(vendors=["oa"], for_s=60))

    config = tree.load({**ENV, "ALERT_SECRET": "s3cret"})

    assert config.alerts.destination("ops").webhook == WebhookDestination(
        "https://ops.example.com/hook", "ALERT_SECRET"
    )


def test_given_a_webhook_whose_secret_variable_is_unset_then_the_load_names_it(
    tree: ConfigTree,
) -> None:
    tree.flow("f")
    path = tree.write("alerts.yaml", alerts())

    error = tree.error()

    assert error.file == str(path)
    assert error.problems == [
        ("destinations.ops.webhook.secret_env", "expected the variable ALERT_SECRET to be set")
    ]


def test_given_an_unknown_kind_then_it_is_refused_naming_the_kinds(tree: ConfigTree) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(kind="disk_full"))

    assert tree.error({**ENV, "ALERT_SECRET": "x"}).problems == [
        ("rules.down.kind", f"expected one of: {', '.join(AlertKind)}")
    ]


def test_given_a_webhook_refusals_rule_then_its_window_and_threshold_load(
    tree: ConfigTree,
) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(kind="webhook_refusals", threshold=20, window_s=120))

    rule = tree.load({**ENV, "ALERT_SECRET": "x"}).alerts.rules["down"]

    assert (rule.kind, rule.threshold, rule.window_s) == (AlertKind.WEBHOOK_REFUSALS, 20, 120)


def test_given_a_window_on_another_kind_then_it_is_refused(tree: ConfigTree) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(kind="lag", threshold=600, window_s=120))

    assert tree.error({**ENV, "ALERT_SECRET": "x"}).problems == [
        ("rules.down.window_s", "expected only for kind webhook_refusals")
    ]


def test_given_a_quota_rule_above_100_percent_then_it_is_refused(tree: ConfigTree) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(kind="quota", threshold=120))

    assert tree.error({**ENV, "ALERT_SECRET": "x"}).problems == [
        ("rules.down.threshold", "expected a percentage of the quota, at most 100")
    ]


def test_given_a_group_on_a_connector_that_cannot_post_to_groups_then_it_is_refused(
    tree: ConfigTree,
) -> None:
    tree.flow("f")
    tree.write(
        "alerts.yaml",
        {
            "destinations": {"ops": {"group": {"connector": "oa", "chat_id": "c1"}}},
            "rules": {"down": {"kind": "vendor_down", "notify": ["ops"]}},
        },
    )

    assert tree.error().problems == [
        ("destinations.ops.group.connector", "expected a connector that posts to groups (wecom)")
    ]


def test_given_a_group_on_wecom_then_it_loads(tree: ConfigTree) -> None:
    tree.flow("f")
    tree.write(
        "alerts.yaml",
        {
            "destinations": {"ops": {"group": {"connector": "wecom", "chat_id": "wr1"}}},
            "rules": {"down": {"kind": "vendor_down", "notify": ["ops"]}},
        },
    )

    group = tree.load().alerts.destination("ops").group
    assert group is not None
    assert group.connector == "wecom"


def test_given_a_rule_notifying_an_unknown_destination_then_it_is_refused(
    tree: ConfigTree,
) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(notify=["pager"]))

    assert tree.error({**ENV, "ALERT_SECRET": "x"}).problems == [
        ("rules.down.notify", "expected destinations defined above (ops)")
    ]


def test_given_a_rule_on_an_unknown_flow_then_it_is_refused(tree: ConfigTree) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(kind="dead_letters", flows=["nope"]))

    assert tree.error({**ENV, "ALERT_SECRET": "x"}).problems == [
        ("rules.down.flows", "expected flow names (f)")
    ]


def test_given_rules_then_beat_evaluates_them_every_evaluate_every_s_on_the_admin_queue() -> None:
    config = load_config(CONFIG_DIR, environment=False)

    [entry] = alert_schedule(config.alerts).values()

    assert entry["task"] == "admin.evaluate_alerts"
    assert entry["schedule"] == 30.0
    assert entry["options"]["queue"] == "admin"


def test_given_no_rules_then_beat_schedules_no_evaluation(tree: ConfigTree) -> None:
    tree.flow("f")

    assert alert_schedule(tree.load().alerts) == {}


def test_given_an_event_connection_rule_with_flows_then_it_is_refused(tree: ConfigTree) -> None:
    tree.flow("f")
    tree.write("alerts.yaml", alerts(kind="event_connection", flows=["f"]))

    assert ("rules.down.flows", "expected vendors, not flows, for event_connection") in (
        tree.error({**ENV, "ALERT_SECRET": "s"}).problems
    )
