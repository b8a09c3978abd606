"""Which AI operation an OTLP span stands for, under the three span conventions agents use.

A span is read by the first convention it declares, in this order:

- **OpenTelemetry GenAI** (``gen_ai.operation.name``): ``execute_tool`` is a tool call;
  ``invoke_agent``/``create_agent`` are agent spans; ``chat``, ``text_completion``,
  ``generate_content`` and ``embeddings`` are model calls. Tool name ``gen_ai.tool.name``
  (else the span name after ``"execute_tool "``), call id ``gen_ai.tool.call.id``, agent
  ``gen_ai.agent.name``.
- **OpenInference** (``openinference.span.kind``, as ``openinference-semantic-conventions``
  defines it): ``TOOL`` is a tool call named ``tool.name`` (else the span name) with call id
  ``tool.id`` (OpenInference: "the identifier for the result of the tool call, corresponding
  to ``tool_call.id``"); ``AGENT`` is an agent span named ``agent.name`` (else the span
  name); ``LLM`` and ``EMBEDDING`` are model calls (operation ``llm``/``embeddings``,
  ``llm.model_name``, ``llm.provider`` else ``llm.system``, ``llm.token_count.prompt`` /
  ``.completion``). Other kinds (CHAIN, RETRIEVER, ...) are no AI operation runwatch tracks.
- **Traceloop** (``traceloop.span.kind``, as ``opentelemetry-semantic-conventions-ai``
  defines it and ``traceloop-sdk``'s decorators set it): ``tool`` (``@tool``) is a tool call
  named ``traceloop.entity.name`` (the SDK sets ``gen_ai.tool.name`` to the same); ``agent``
  (``@agent``) is an agent span named ``traceloop.entity.name``. ``workflow`` and ``task``
  group steps and carry no tool or model call: not tracked. Traceloop sets no tool call id;
  ``gen_ai.tool.call.id`` is read when present. Spans inside an ``@agent`` carry its name as
  ``gen_ai.agent.name`` (the SDK's span processor).

Agent spans become ``model.call`` events with operation ``invoke_agent`` (as GenAI's do), so
each convention's agent run is visible the same way. The functions are pure.
"""

from __future__ import annotations

from typing import Any, NamedTuple

GENAI, OPENINFERENCE, TRACELOOP = "genai", "openinference", "traceloop"

TOOL, MODEL, AGENT = "tool", "model", "agent"

_GENAI_OPS: dict[str, str] = {
    "execute_tool": TOOL, "invoke_agent": AGENT, "create_agent": AGENT, "chat": MODEL, "text_completion": MODEL,
    "generate_content": MODEL, "embeddings": MODEL,
}
#: OpenInference span kind -> (role, operation of the event).
_OI_KINDS: dict[str, tuple[str, str]] = {
    "TOOL": (TOOL, "execute_tool"), "AGENT": (AGENT, "invoke_agent"), "LLM": (MODEL, "llm"),
    "EMBEDDING": (MODEL, "embeddings"),
}
#: Traceloop span kind -> (role, operation of the event).
_TL_KINDS: dict[str, tuple[str, str]] = {"tool": (TOOL, "execute_tool"), "agent": (AGENT, "invoke_agent")}

MAX_STR = 4096


class SpanKind(NamedTuple):
    """What a span stands for: the convention it was read by, its role and the event's operation."""

    convention: str  # genai | openinference | traceloop
    role: str  # tool | model | agent
    operation: str


def text(value: Any) -> str | None:
    """A scalar attribute as a bounded non-empty string, else None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    out = str(value)
    return out[:MAX_STR] if out else None


def classify(attrs: dict[str, Any]) -> SpanKind | None:
    """The AI operation of a span with attributes ``attrs``, or None for any other span."""
    op = text(attrs.get("gen_ai.operation.name"))
    if op is not None and op in _GENAI_OPS:
        return SpanKind(GENAI, _GENAI_OPS[op], op)
    oi = text(attrs.get("openinference.span.kind"))
    if oi is not None and oi.upper() in _OI_KINDS:
        return SpanKind(OPENINFERENCE, *_OI_KINDS[oi.upper()])
    tl = text(attrs.get("traceloop.span.kind"))
    if tl is not None and tl in _TL_KINDS:
        return SpanKind(TRACELOOP, *_TL_KINDS[tl])
    return None


def tool_name(kind: SpanKind, span_name: str, attrs: dict[str, Any]) -> str | None:
    """The tool a tool span called (None: the span does not say)."""
    if kind.convention == OPENINFERENCE:
        return text(attrs.get("tool.name")) or text(span_name)
    if kind.convention == TRACELOOP:
        return text(attrs.get("traceloop.entity.name")) or text(attrs.get("gen_ai.tool.name"))
    name = text(attrs.get("gen_ai.tool.name"))
    if name is None and span_name.startswith("execute_tool "):
        name = text(span_name[len("execute_tool "):].strip())
    return name


def tool_call_id(kind: SpanKind, attrs: dict[str, Any]) -> str | None:
    """The model's id of the tool call (None: the span does not say)."""
    if kind.convention == OPENINFERENCE:
        return text(attrs.get("tool.id"))
    return text(attrs.get("gen_ai.tool.call.id"))


def own_agent(kind: SpanKind, attrs: dict[str, Any]) -> str | None:
    """The agent name a span states for itself."""
    if kind.convention == OPENINFERENCE:
        return text(attrs.get("agent.name"))
    return text(attrs.get("gen_ai.agent.name"))


def agent_of(span_name: str, attrs: dict[str, Any]) -> str | None:
    """The agent an agent span (any convention) runs, or None when the span is no agent span."""
    kind = classify(attrs)
    if kind is None or kind.role != AGENT:
        return None
    if kind.convention == TRACELOOP:
        return text(attrs.get("traceloop.entity.name"))
    return own_agent(kind, attrs) or (text(span_name) if kind.convention == OPENINFERENCE else None)


def model_facts(kind: SpanKind, attrs: dict[str, Any]) -> dict[str, Any]:
    """``provider``, ``model`` and token counts of a model or agent span (values may be None)."""
    if kind.convention == OPENINFERENCE:
        return {"provider": text(attrs.get("llm.provider")) or text(attrs.get("llm.system")),
                "model": text(attrs.get("llm.model_name")),
                "input_tokens": whole(attrs.get("llm.token_count.prompt")),
                "output_tokens": whole(attrs.get("llm.token_count.completion"))}
    return {"provider": text(attrs.get("gen_ai.provider.name")) or text(attrs.get("gen_ai.system")),
            "model": text(attrs.get("gen_ai.request.model")) or text(attrs.get("gen_ai.response.model")),
            "input_tokens": whole(attrs.get("gen_ai.usage.input_tokens")),
            "output_tokens": whole(attrs.get("gen_ai.usage.output_tokens")),
            "conversation_id": text(attrs.get("gen_ai.conversation.id"))}


def whole(value: Any) -> int | None:
    """An integer attribute (an int, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
