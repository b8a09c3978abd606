"""Which environment variables of an exec the kernel sensor reports (names and values).

Only names on this allow-list leave the kernel: variables that change how a program loads
or where it connects, which attackers set and rules look for. Everything else in the
environment (tokens, keys) is never copied.
"""

from __future__ import annotations

import ctypes

from runwatch.bpf.libbpf import check_rc, lib
from runwatch.sensors.kernel.layout import ENV_NAME

#: The default allow-list.
DEFAULT: tuple[str, ...] = (
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_BIND_NOW", "GLIBC_TUNABLES", "LD_TRACE_LOADED_OBJECTS",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "PYTHONPATH", "PYTHONSTARTUP", "NODE_OPTIONS", "BASH_ENV", "ENV", "PROMPT_COMMAND",
)

#: Most names the kernel map holds.
LIMIT = 64


def install(map_fd: int, names: tuple[str, ...]) -> None:
    """Write ``names`` into the kernel's ``env_allow`` map."""
    if len(names) > LIMIT:
        raise ValueError(f"at most {LIMIT} environment variable names can be reported, not {len(names)}")
    one = ctypes.c_uint8(1)
    for name in names:
        raw = name.encode()
        if not raw or len(raw) >= ENV_NAME or b"=" in raw:
            raise ValueError(f"environment variable name must be 1-{ENV_NAME - 1} bytes without '=': {name!r}")
        key = (ctypes.c_char * ENV_NAME)()
        key.value = raw
        check_rc(lib().bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(one), 0),
                 f"adding environment variable name {name}")
