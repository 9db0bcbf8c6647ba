from pytake_flow_engine.adapters.db.tables import Base
from pytake_plumbing.migration_env import run_env

run_env(Base.metadata)
