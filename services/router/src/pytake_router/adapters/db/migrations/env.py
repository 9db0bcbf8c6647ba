from pytake_plumbing.migration_env import run_env
from pytake_router.adapters.db.tables import Base

run_env(Base.metadata)
