"""A hand-written ``openai`` chat-completions loop whose tools run through ``dispatch_tool_calls``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from runwatch.testing.capture import LiveCapture

AGENT = textwrap.dedent('''
    import os, subprocess
    from openai import OpenAI
    from runwatch.sdk.autowrap import dispatch_tool_calls

    def probe(tag):
        subprocess.run(["/usr/bin/true", tag], check=True)
        return tag

    client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="test")
    messages = [{"role": "user", "content": "probe the five tags"}]
    while True:
        reply = client.chat.completions.create(model="scripted-tools-1", messages=messages)
        message = reply.choices[0].message
        if not message.tool_calls:
            print(message.content)
            break
        messages.append(message.model_dump(exclude_none=True))
        messages += dispatch_tool_calls(message, {"probe": probe}, agent="looper")
''')

SCRIPT = [[("probe", {"tag": "loop-a"}), ("probe", {"tag": "loop-b"}), ("probe", {"tag": "loop-c"})],
          [("probe", {"tag": "loop-d"}), ("probe", {"tag": "loop-e"})]]


@pytest.mark.kernel
def test_chat_loop_tool_calls_are_attributed(tmp_path: Path, live: LiveCapture, tools: Any) -> None:
    calls = tools.drive(tmp_path, AGENT, SCRIPT, live)
    assert len(calls) == 5
    tools.check(live.settle(), calls, "looper", framework="openai chat loop (dispatch_tool_calls)", path="SDK",
                parallel=3)
