pytest_plugins = ["runwatch.containers.pytest_plugin", "runwatch.testing.pytest_plugin"]
