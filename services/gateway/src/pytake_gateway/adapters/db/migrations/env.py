from pytake_gateway.adapters.db.tables import Base
from pytake_plumbing.migration_env import run_env

run_env(Base.metadata)
