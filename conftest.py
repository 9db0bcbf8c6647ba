pytest_plugins = ["pytake_devstack.pytest_plugin"]
