pytest_plugins = ["runwatch.containers.pytest_plugin"]
