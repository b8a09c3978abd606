"""A third-party plugin the tool agent loads at run time (an MCP-server-style tool provider).

Loading it registers one tool, ``weather.forecast``, which talks to the plugin's own
backend: it resolves ``WEATHER_HOST`` and connects to the port the agent was configured
with. That backend is an endpoint the agent never contacted before the plugin arrived,
which is exactly what runwatch's "new endpoint after plugin load" detection looks for.
"""

from __future__ import annotations

from collections.abc import Callable

from runwatch.demo.workloads.tools import ToolError, http_get, resolve

PLUGIN_NAME = "weather-mcp"
WEATHER_HOST = "api.weather-plugin.example"


def register(endpoint_port: int, fallback_ip: str = "127.0.0.1") -> dict[str, Callable[..., str]]:
    """The plugin's tools, bound to its backend port."""

    def forecast(city: str) -> str:
        try:
            addr = resolve(WEATHER_HOST)
        except ToolError:
            addr = fallback_ip  # no resolver answered: use the configured address
        return http_get(f"http://{addr}:{endpoint_port}/forecast?city={city}")

    return {"weather.forecast": forecast}
