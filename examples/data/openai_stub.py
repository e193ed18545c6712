"""A tiny OpenAI-compatible server with scripted replies, for the `openai_server.yaml` example and its test.

It stands in for vLLM, Ollama or llama.cpp's `llama-server` so that the example runs anywhere, offline::

    python examples/data/openai_stub.py --port 8080          # then, in another terminal:
    agentdag run examples/openai_server.yaml

It serves `GET /v1/models` (one model, `stub`) and `POST /v1/chat/completions`, streamed (server-sent
events) or not, on 127.0.0.1 only. The planner is answered with a fixed JSON plan, the joiner with an
answer made from the results it is shown, after `--delay-s` seconds each (simulated generation time).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stub"
PLAN = {
    "thought": "Both products at once, then their difference; the power on its own.",
    "nodes": [
        {"id": 1, "tool": "calculate", "arguments": {"expression": "7 * 6"}, "depends_on": []},
        {"id": 2, "tool": "calculate", "arguments": {"expression": "5 * 4"}, "depends_on": []},
        {"id": 3, "tool": "calculate", "arguments": {"expression": "$1 - $2"}, "depends_on": [1, 2]},
        {"id": 4, "tool": "calculate", "arguments": {"expression": "2 ** 10"}, "depends_on": []},
    ],
}
_RESULT = re.compile(r"^\[(\d+)\] [^\n]*? -> (.*)$", re.MULTILINE)


def reply_to(messages: list[dict[str, Any]]) -> str:
    """The scripted reply: the plan for a planner prompt, a finishing decision for a joiner prompt."""
    prompt = "\n".join(str(message.get("content", "")) for message in messages)
    if "You are a planner" in prompt:
        return json.dumps(PLAN)
    results = dict(_RESULT.findall(prompt))
    answer = f"7 * 6 - 5 * 4 = {results.get('3', '?')}, and 2 ** 10 = {results.get('4', '?')}."
    decision = {"thought": "The results answer both questions.", "answer": answer, "action": "finish", "reason": ""}
    return json.dumps(decision)


class StubHandler(BaseHTTPRequestHandler):
    """Answers the two endpoints agentdag's OpenAI client uses."""

    delay_s = 0.0

    def do_GET(self) -> None:
        """`GET /v1/models`: the one served model."""
        if self.path.rstrip("/") != "/v1/models":
            self.send_error(404)
            return
        self._send_json({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]})

    def do_POST(self) -> None:
        """`POST /v1/chat/completions`: the scripted reply, streamed when asked."""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        text = reply_to(body.get("messages", []))
        time.sleep(self.delay_s)
        prompt_tokens = sum(len(str(message.get("content", ""))) // 4 for message in body.get("messages", []))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created = int(time.time())
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            self._send_json(
                {"id": "stub-1", "object": "chat.completion", "created": created, "model": MODEL,
                 "choices": [choice], "usage": usage}
            )  # fmt: skip
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": "stub-1", "object": "chat.completion.chunk", "created": created, "model": MODEL}
        pieces = [text[start : start + 16] for start in range(0, len(text), 16)]
        for index, piece in enumerate(pieces):
            finish = "stop" if index == len(pieces) - 1 else None
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
            self._send_event({**base, "choices": [delta]})
        self._send_event({**base, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def _send_json(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the terminal quiet."""


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until interrupted; prints the API root (`http://127.0.0.1:PORT/v1`) first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--delay-s", type=float, default=0.5, help="simulated generation time per reply")
    arguments = parser.parse_args(argv)
    StubHandler.delay_s = arguments.delay_s
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), StubHandler)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
