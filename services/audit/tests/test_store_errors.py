"""How the audit store reads FerretDB's errors: an away backend is an outage, retried, not a bad document."""

from pymongo.errors import OperationFailure

from pytake_audit.adapters.mongo_store import DatabaseAway, _as_outage, without_nul
from pytake_plumbing.messaging import is_transient

# Messages FerretDB gave while its PostgreSQL was stopped and restarted.
AWAY = [
    "[msg_insert.go:168] FATAL: terminating connection due to administrator command (SQLSTATE 57P01)",
    "[msg_insert.go:168] failed to connect to `user=pytake database=ferretdb`: dial error: connection refused",
    "server error: FATAL: the database system is shutting down (SQLSTATE 57P03)",
]


def test_a_backend_outage_is_transient() -> None:
    for message in AWAY:
        error = _as_outage(OperationFailure(message))
        assert isinstance(error, DatabaseAway) and is_transient(error)


def test_other_failures_stay_what_they_are() -> None:
    error = OperationFailure("ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05)")
    assert _as_outage(error) is error and not is_transient(error)


def test_nul_is_replaced_in_keys_and_nested_values() -> None:
    assert without_nul({"a\x00": ["x\x00y", {"n": 1, "s": "\x00"}]}) == {"a\u2400": ["x\u2400y", {"n": 1, "s": "\u2400"}]}
