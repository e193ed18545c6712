"""The embedded model's chat template, extended with native tool calls.

SmolLM2's own template (in its GGUF) never mentions tools, so llama.cpp's server silently leaves a request's
`tools` out of the prompt and never parses a tool call. This template renders every conversation without
tools exactly as SmolLM2's does (a test compares them on the real server); with tools it adds them to the
system message and shows the model one way to call them: a JSON list inside `<tool_call>` tags, as the
larger SmolLM2 models were taught. llama.cpp reads that format off the template and parses such replies
into `tool_calls`.

SmolLM2-135M was not trained to call tools: zero-shot it answers in prose (llama.cpp lets text precede the
calls even with `tool_choice: "required"`, so a reply that never opens `<tool_call>` runs to `max_tokens`);
with an example call or two earlier in the conversation it does call them.
"""

from __future__ import annotations

__all__ = ["SMOLLM2_DEFAULT_SYSTEM", "SMOLLM2_TOOLS_TEMPLATE"]

SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""The system message SmolLM2's template puts first when a conversation has none."""

_TOOL_INSTRUCTIONS = (
    "You can call these functions:\\n<tools>' + (tools | tojson) + '</tools>\\n\\n"
    "To call functions, reply with only a JSON list of the calls inside <tool_call></tool_call> tags, "
    'for example:\\n<tool_call>[{"name": "function_name", "arguments": {"argument": "value"}}]'
    "</tool_call>"
)

SMOLLM2_TOOLS_TEMPLATE = (
    # Without tools: SmolLM2's template, character for character in what it renders.
    "{%- if not tools and messages | length > 0 and messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + SMOLLM2_DEFAULT_SYSTEM + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    # With tools: one system message, the caller's (or the default) followed by the tools.
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if messages | length > 0 and messages[0]['role'] == 'system' -%}{{- messages[0]['content'] -}}"
    "{%- else -%}{{- '" + SMOLLM2_DEFAULT_SYSTEM + "' -}}{%- endif -%}"
    "{{- '\\n\\n" + _TOOL_INSTRUCTIONS + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if tools and loop.first and message['role'] == 'system' -%}"
    # Rendered above, with the tools.
    "{%- elif message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if message['content'] -%}{{- message['content'] + '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>[' -}}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- if call['function'] is defined -%}{%- set call = call['function'] -%}{%- endif -%}"
    "{%- if not loop.first -%}{{- ', ' -}}{%- endif -%}"
    "{{- '{\"name\": \"' + call['name'] + '\", \"arguments\": ' -}}"
    "{%- if call['arguments'] is string -%}{{- call['arguments'] -}}"
    "{%- else -%}{{- call['arguments'] | tojson -}}{%- endif -%}"
    "{{- '}' -}}"
    "{%- endfor -%}"
    "{{- ']</tool_call><|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""SmolLM2's chat template with tool calls (see the module docstring), for llama.cpp's jinja engine."""
