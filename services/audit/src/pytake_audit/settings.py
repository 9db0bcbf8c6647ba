from __future__ import annotations

from pydantic import Field

from pytake_plumbing.settings import CommonSettings


class AuditSettings(CommonSettings):
    http_port: int = Field(default=8084, alias="AUDIT_HTTP_PORT")
    # Records read ahead of the store: past this many waiting, reading pauses until half are
    # written. A deep buffer keeps the store busy when catching up.
    batch_max_records: int = Field(default=5000, ge=1, le=10_000, alias="AUDIT_BATCH_MAX_RECORDS")
    # Events per write (one insert_many), and writes at once (a lane of partitions each), so the
    # next batch is read and decoded while the store writes the last.
    write_chunk: int = Field(default=500, ge=1, le=10_000, alias="AUDIT_WRITE_CHUNK")
    writes_in_flight: int = Field(default=2, ge=1, le=16, alias="AUDIT_WRITES_IN_FLIGHT")
    # How long a write waits for a fuller chunk. Audit is off the customer's path: at 60 msg/s it
    # wrote nearly every event in an insert of its own; 0.2 s makes a few inserts a second.
    write_linger_s: float = Field(default=0.2, ge=0, le=5, alias="AUDIT_WRITE_LINGER_S")
    # Retention of organizations that did not choose their own.
    default_retention_days: int = Field(default=365, ge=1, le=3650, alias="AUDIT_DEFAULT_RETENTION_DAYS")
    retention_refresh_s: float = Field(default=60.0, gt=0, alias="AUDIT_RETENTION_REFRESH_S")
    # Only where the server has no TTL monitor (FerretDB): how often expired documents are deleted.
    sweep_interval_s: float = Field(default=3600.0, gt=0, alias="AUDIT_SWEEP_INTERVAL_S")
