"""The OpenAI Responses API wire format, translated to and from the chat request tether runs.

A feature answers a Responses request exactly as it answers chat completions: the request
becomes the same :class:`~tether.types.ModelRequest` the chat endpoint builds, and the pipeline
(guards, budgets, traces, failure path) runs it. Every function here is pure, and each
direction has its inverse, so the translation is tested both ways::

    Responses                                        chat (ModelRequest)
    instructions: "Be brief"                    →    developer message, after the feature's
                                                     own system prompt (never replacing it)
    input: "Hi" | [items]                       ⇄    messages
      {role, content: str | [input_text,             user / assistant / system / developer
        input_image, input_file, output_text]}       (non-text parts kept in Message.parts)
      {type: function_call, call_id, name, ...}      assistant tool_calls
      {type: function_call_output, call_id, ...}     tool message
    tools: [{type: function, name, parameters}] ⇄    [{type: function, function: {...}}]
    tool_choice: {type: function, name}         ⇄    {type: function, function: {name}}
    text.format: json_schema | json_object      ⇄    response_format
    max_output_tokens                           ⇄    max_tokens (sent as max_completion_tokens)
    reasoning.effort, text.verbosity            ⇄    reasoning_effort, verbosity

A :class:`~tether.pipeline.result.Result` becomes the ``response`` object
(:func:`response_object`) with ``output`` items: a ``message`` with ``output_text`` (and
``refusal``) content, then one ``function_call`` item per tool call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tether.errors import InvalidRequest
from tether.gateway import wire
from tether.pipeline.result import Result
from tether.types import Message, ModelRequest, Role, ToolCall, Usage

ROLES: frozenset[str] = frozenset({"user", "assistant", "system", "developer"})
# Responses fields tether cannot honour without replacing what the feature builds: a 400
REFUSED_FIELDS = {
    "prompt": "the feature builds the prompt; send input (and instructions)",
    "conversation": "tether keeps no conversations; continue with previous_response_id or "
    "send the whole conversation as input",
    "messages": "the Responses API takes input; send input",
    "system": "the feature's system prompt is its own; send instructions",
}


class TextFormat(BaseModel):
    """``text.format``: ``text`` (default), ``json_object``, or ``json_schema`` with a
    ``name`` and a ``schema``."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, wire.Json]
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(default=None, min_length=1)
    schema_: Annotated[dict[str, Any] | None, wire.FINITE] = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, wire.Json]
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses``. ``model`` names a feature (or one of its aliases, or
    ``feature:variant``); ``input`` is a string (one user message) or a list of items.
    Fields the chat endpoint passes through pass here too; fields that would replace the
    feature's prompt are refused (400) and any other field is dropped and named on the trace."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, populate_by_name=True)
    __pydantic_extra__: dict[str, wire.Json]
    model: str = Field(min_length=1)
    input: Annotated[
        str | list[dict[str, Any]] | None,
        BeforeValidator(wire._finite_number),
        wire.FINITE,
    ] = None
    instructions: str | None = Field(
        default=None, description="A developer message after the feature's own system prompt."
    )
    tools: Annotated[list[dict[str, Any]] | None, wire.FINITE] = None
    tool_choice: wire.Json = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool = False
    store: bool | None = Field(
        default=None,
        description="Default true: stored for previous_response_id and GET /v1/responses/{id}.",
    )
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=64)
    metadata: dict[str, str] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Annotated[dict[str, Any] | None, wire.FINITE] = None
    background: bool | None = Field(default=None, description="Only false: 400 otherwise.")

    @property
    def stored(self) -> bool:
        return self.store is not False


# ---------------------------------------------------------------- request: Responses → chat


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", "send a string")
    return value


def chat_part(part: Any, where: str) -> dict[str, Any]:
    """One Responses content part as the chat part it is (``input_image`` → ``image_url``,
    ``input_file`` → ``file``, text parts → ``text``)."""
    if not isinstance(part, dict):
        raise _bad(where, 'send a content part object, e.g. {"type": "input_text", ...}')
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": _string(part, "text", where)}
    if kind == "refusal":
        return {"type": "text", "text": _string(part, "refusal", where)}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _bad(
                f"{where}.image_url",
                "send the image as a URL or a data: URL (file_id images are not supported)",
            )
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {
            k: part[k] for k in ("file_id", "file_data", "filename") if isinstance(part.get(k), str)
        }
        if "file_id" not in file and "file_data" not in file:
            raise _bad(
                where, "send the file as file_data (base64) or file_id (file_url is not supported)"
            )
        return {"type": "file", "file": file}
    raise _bad(
        f"{where}.type",
        f"content parts of type {kind!r} are not supported; send input_text, input_image, "
        "input_file or output_text",
    )


def _content(content: Any, where: str) -> tuple[str | None, list[dict[str, Any]] | None]:
    """A message's content as (the text view, the chat parts when any part is not text)."""
    if content is None or isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise _bad(where, "send a string or a list of content parts")
    parts = [chat_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
    text = "".join(p["text"] for p in parts if p["type"] == "text")
    return text, parts if any(p["type"] != "text" for p in parts) else None


def _output_text(output: Any, where: str) -> str:
    """A ``function_call_output``'s output: a string, or text parts (joined)."""
    if isinstance(output, str):
        return output
    text, parts = _content(output, where)
    if parts is not None:
        raise _bad(where, "a function_call_output takes text (a string or input_text parts)")
    return text or ""


def input_messages(input_: str | list[dict[str, Any]] | None) -> list[Message]:
    """The chat messages of a Responses ``input``: a string is one user message; items map
    one to one, except that ``function_call`` items join the assistant message right before
    them (the chat shape of one assistant turn that calls tools)."""
    if input_ is None:
        return []
    if isinstance(input_, str):
        return [Message("user", input_)]
    messages: list[Message] = []
    for i, item in enumerate(input_):
        where = f"input[{i}]"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _bad(f"{where}.role", "send user, assistant, system or developer")
            text, parts = _content(item.get("content"), f"{where}.content")
            messages.append(Message(role, text, parts=parts))
        elif kind == "function_call":
            call = ToolCall(
                _string(item, "call_id", where),
                _string(item, "name", where),
                _string(item, "arguments", where),
            )
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.parts is None:
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                messages.append(Message("assistant", None, [call]))
        elif kind == "function_call_output":
            output = _output_text(item.get("output"), f"{where}.output")
            messages.append(Message("tool", output, tool_call_id=_string(item, "call_id", where)))
        else:
            raise _bad(
                f"{where}.type",
                f"input items of type {kind!r} are not supported; send messages, function_call "
                "and function_call_output items",
            )
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (flat: ``{type, name, description, parameters, strict}``) as
    chat tools. Hosted tools (web search, file search, ...) are not tether's to run: 400."""
    if tools is None:
        return None
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _bad(
                f"tools[{i}].type",
                f"tools of type {tool.get('type')!r} are not supported; send function tools",
            )
        function = {"name": _string(tool, "name", f"tools[{i}]")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: Any) -> Any:
    """``auto`` / ``none`` / ``required`` as they are; ``{type: function, name}`` as the chat
    ``{type: function, function: {name}}``."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    raise _bad(
        "tool_choice", 'send "auto", "none", "required" or {"type": "function", "name": ...}'
    )


def response_format(text: TextOptions | None) -> dict[str, Any] | None:
    """``text.format`` as the chat ``response_format`` (None for plain text)."""
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.name is None or fmt.schema_ is None:
        raise _bad("text.format", "a json_schema format needs a name and a schema")
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    if fmt.description is not None:
        schema["description"] = fmt.description
    return {"type": "json_schema", "json_schema": schema}


def passed_extra(req: ResponsesRequest) -> tuple[dict[str, Any], list[str]]:
    """The options that go to the provider and the names of the fields dropped; InvalidRequest
    for a field that would replace the feature's prompt (or a ``background`` run)."""
    if req.background:
        raise _bad("background", "background responses are not supported; leave it out or false")
    passed: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in (req.model_extra or {}).items():
        if name in REFUSED_FIELDS:
            raise _bad(name, f"tether does not take this field ({REFUSED_FIELDS[name]})")
        if name == "top_logprobs" and value is not None:
            passed.update(logprobs=True, top_logprobs=value)
        elif name in wire.PASSED_FIELDS:
            passed[name] = value
        elif name != wire.VARIABLES_FIELD:
            dropped.append(name)
    if req.parallel_tool_calls is not None:
        passed["parallel_tool_calls"] = req.parallel_tool_calls
    effort = (req.reasoning or {}).get("effort")
    if effort is not None:
        passed["reasoning_effort"] = effort
    if req.text is not None and req.text.verbosity is not None:
        passed["verbosity"] = req.text.verbosity
    return passed, dropped


def to_model_request(
    req: ResponsesRequest, history: Sequence[Message] = (), extra: dict[str, Any] | None = None
) -> ModelRequest:
    """The chat request a Responses request is: ``instructions`` first (a developer message,
    after which the feature puts nothing: its own system prompt goes before it), then the
    earlier turns (``history``, from ``previous_response_id``), then ``input``."""
    messages = [Message("developer", req.instructions)] if req.instructions else []
    messages += [*history, *input_messages(req.input)]
    if not messages:
        raise _bad("input", "send input (a string or a list of items)")
    return ModelRequest(
        messages=messages,
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        tools=chat_tools(req.tools),
        tool_choice=chat_tool_choice(req.tool_choice),
        response_format=response_format(req.text),
        extra=dict(extra or {}),
        max_tokens_field="max_completion_tokens",
    )


def template_variables(req: ResponsesRequest, asked: ModelRequest) -> dict[str, Any]:
    """The feature's template variables: ``message`` (the last user text) and the request's
    ``tether_variables`` object, as the chat endpoint takes them."""
    last = next((m.content or "" for m in reversed(asked.messages) if m.role == "user"), "")
    variables: dict[str, Any] = {"message": last}
    value = (req.model_extra or {}).get(wire.VARIABLES_FIELD)
    if value is not None and not isinstance(value, dict):
        raise _bad(wire.VARIABLES_FIELD, "send an object of template variables")
    variables.update(value or {})
    return variables


# ---------------------------------------------------------------- request: chat → Responses


def response_part(part: dict[str, Any], role: str) -> dict[str, Any]:
    """A chat content part as the Responses part it came from (inverse of :func:`chat_part`)."""
    kind = part.get("type")
    if kind == "text":
        text_type = "output_text" if role == "assistant" else "input_text"
        return {"type": text_type, "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url") or {}
        out = {"type": "input_image", "image_url": image.get("url")}
        if "detail" in image:
            out["detail"] = image["detail"]
        return out
    if kind == "file":
        return {"type": "input_file", **(part.get("file") or {})}
    return dict(part)


def message_items(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat messages as Responses input items (inverse of :func:`input_messages`): text
    content as a string, parts as Responses parts, an assistant's tool calls as
    ``function_call`` items after its text, tool messages as ``function_call_output``."""
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            items.append(
                {"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content}
            )
            continue
        content: Any = m.content
        if m.parts is not None:
            content = [response_part(p, m.role) for p in m.parts]
        if content is not None or not m.tool_calls:
            items.append({"type": "message", "role": m.role, "content": content})
        items += [
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
            for c in m.tool_calls or []
        ]
    return items


def responses_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Chat function tools in the Responses flat shape (inverse of :func:`chat_tools`)."""
    if tools is None:
        return None
    return [{"type": "function", **tool["function"]} for tool in tools]


def responses_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


def text_options(response_format: dict[str, Any] | None) -> dict[str, Any]:
    """The chat ``response_format`` as Responses ``text`` options (inverse of
    :func:`response_format`)."""
    if response_format is None:
        return {"format": {"type": "text"}}
    if response_format.get("type") == "json_schema":
        return {"format": {"type": "json_schema", **response_format["json_schema"]}}
    return {"format": {"type": response_format["type"]}}


def request_body(feature: str, asked: ModelRequest) -> dict[str, Any]:
    """The Responses request body a chat request is (inverse of :func:`to_model_request`, for
    upstreams that speak the Responses API): a leading developer message becomes
    ``instructions``."""
    messages = list(asked.messages)
    body: dict[str, Any] = {"model": feature}
    if messages and messages[0].role == "developer" and messages[0].parts is None:
        body["instructions"] = messages.pop(0).content
    body["input"] = message_items(messages)
    options = {
        "max_output_tokens": asked.max_tokens,
        "temperature": asked.temperature,
        "top_p": asked.top_p,
        "tools": responses_tools(asked.tools),
        "tool_choice": responses_tool_choice(asked.tool_choice),
    }
    body.update({k: v for k, v in options.items() if v is not None})
    if asked.response_format is not None:
        body["text"] = text_options(asked.response_format)
    return body


# ---------------------------------------------------------------- answer: Result → response


def usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens, "cache_write_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def incomplete_reason(finish_reason: str | None) -> str | None:
    """Why an answer stopped short, as the Responses API says it (None: it did not)."""
    return {"length": "max_output_tokens", "content_filter": "content_filter"}.get(
        finish_reason or ""
    )


def message_item(item_id: str, text: str, refusal: str | None, status: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text or not refusal:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def output_items(result: Result, text: str | None = None) -> list[dict[str, Any]]:
    """The ``output`` of a result: a ``message`` (unless the answer is only tool calls), then
    one ``function_call`` per tool call. ``text`` replaces the answer's text (what the store
    keeps: as the feature's trace capture keeps it)."""
    status = "incomplete" if incomplete_reason(result.finish_reason) else "completed"
    body = result.output if text is None else text
    items = []
    if body or result.refusal or not result.tool_calls:
        items.append(message_item(f"msg_{result.trace_id}", body, result.refusal, status))
    items += [
        call_item(f"fc_{result.trace_id}_{i}", call)
        for i, call in enumerate(result.tool_calls or [])
    ]
    return items


def response_object(
    req: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    model: str,
    result: Result | None,
    output: list[dict[str, Any]],
    stored: bool,
) -> dict[str, Any]:
    """The ``response`` object: ``result`` None while a stream is in progress (status
    ``in_progress``, no usage)."""
    if result is None:
        status, incomplete, used, facts = "in_progress", None, None, None
    else:
        reason = incomplete_reason(result.finish_reason)
        status = "incomplete" if reason else "completed"
        incomplete = {"reason": reason} if reason else None
        used, facts = usage(result.usage), wire.tether_facts(result)
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "reasoning": req.reasoning,
        "store": stored,
        "temperature": req.temperature,
        "text": _text(req.text),
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": req.tools or [],
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": used,
        "user": req.user,
        "metadata": req.metadata or {},
    }
    if facts is not None:
        body["tether"] = facts
    return body


def _text(text: TextOptions | None) -> dict[str, Any]:
    if text is None or text.format is None:
        out: dict[str, Any] = {"format": {"type": "text"}}
    else:
        out = {"format": text.format.model_dump(by_alias=True, exclude_none=True)}
    if text is not None and text.verbosity is not None:
        out["verbosity"] = text.verbosity
    return out


def history_messages(items: Sequence[dict[str, Any]]) -> list[Message]:
    """Stored items (input and output, as :func:`message_items` and :func:`output_items` wrote
    them) as the chat messages they were: the earlier turns ``previous_response_id`` brings."""
    return input_messages(list(items))


def captured_messages(captured: Sequence[dict[str, Any]]) -> list[Message]:
    """Messages as the trace capture keeps them (:mod:`tether.pipeline.capture`) as chat
    messages (their text only: capture keeps no image or file parts)."""
    messages = []
    for m in captured:
        calls = [ToolCall(c["id"], c["name"], c["arguments"]) for c in m.get("tool_calls") or []]
        role: Role = m["role"]
        messages.append(
            Message(role, m.get("content"), calls or None, m.get("tool_call_id"), m.get("name"))
        )
    return messages
