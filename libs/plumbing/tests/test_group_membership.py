"""Consumer-group membership (librdkafka options): static with a replica id, dynamic without."""

from pytake_plumbing.settings import CommonSettings


def test_a_named_replica_is_a_static_member_of_each_group_under_its_own_instance_id() -> None:
    settings = CommonSettings.model_validate({"PYTAKE_REPLICA_ID": "router-7d9f-x2"})
    router, statuses = settings.group_membership("router"), settings.group_membership("sender-statuses")
    assert router["group.instance.id"] == "router.router-7d9f-x2"
    assert statuses["group.instance.id"] == "sender-statuses.router-7d9f-x2"
    assert router["session.timeout.ms"] == 20_000 and router["heartbeat.interval.ms"] == 1_000
    assert router["group.id"] == "router"


def test_without_a_replica_id_membership_is_dynamic() -> None:
    membership = CommonSettings().group_membership("router")
    assert "group.instance.id" not in membership and membership["session.timeout.ms"] == 10_000


def test_the_session_timeout_can_be_set_and_heartbeats_stay_within_a_third_of_it() -> None:
    settings = CommonSettings.model_validate({"PYTAKE_REPLICA_ID": "r1", "KAFKA_SESSION_TIMEOUT_MS": "2400"})
    membership = settings.group_membership("audit")
    assert membership["session.timeout.ms"] == 2_400 and membership["heartbeat.interval.ms"] == 800
