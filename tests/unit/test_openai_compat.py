"""OpenAICompatBackend against a real HTTP server on 127.0.0.1 (stdlib), never another address."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from generate.openai_compat import OpenAICompatBackend, OpenAICompatError


class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append((self.path, dict(self.headers), body))
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        if body.get("stream"):  # server-sent events: role chunk, content deltas, a usage chunk, [DONE]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunks = [{"choices": [{"delta": {"role": "assistant"}}]}] + [
                {"choices": [{"delta": {"content": piece}}]} for piece in (" Yes", ",", " it", " is", " [1].")]
            if body["model"] != "no-usage":
                chunks.append({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 5}})
            if body["model"] == "stream-error":
                chunks = chunks[:2] + [{"error": {"message": "context overflow"}}]
            for c in chunks:
                self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            return
        if body["model"] == "garbage":
            out = b"<html>not json</html>"
        else:
            last = body["messages"][-1]["content"]
            out = json.dumps({"choices": [{"message": {"role": "assistant", "content": f" echo: {last[:10]} "}}],
                              "usage": {"prompt_tokens": 42, "completion_tokens": 3}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture()
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_generate_round_trip(server, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sk-test")
    llm = OpenAICompatBackend(server, "tiny", api_key_env="TEST_KEY")
    g = llm.generate([{"role": "user", "content": "Is it relevant?"}], max_new_tokens=4)
    assert g.text == "echo: Is it rele" and g.prompt_tokens == 42 and g.completion_tokens == 3 and g.model == "tiny"
    assert g.prefill_s > 0 and g.decode_s == 0.0
    path, headers, body = _Handler.seen[-1]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert body["max_tokens"] == 4 and body["temperature"] == 0.0


def test_errors_are_clear(server, monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ValueError, match="NOPE_KEY is not set"):
        OpenAICompatBackend(server, "tiny", api_key_env="NOPE_KEY")
    with pytest.raises(ValueError, match="http"):
        OpenAICompatBackend("ftp://x", "tiny", api_key_env=None)
    with pytest.raises(OpenAICompatError, match="HTTP 500"):
        OpenAICompatBackend(server, "broken", api_key_env=None).generate("hi")
    with pytest.raises(OpenAICompatError, match="not a chat completion"):
        OpenAICompatBackend(server, "garbage", api_key_env=None).generate("hi")
    with pytest.raises(ValueError, match="prompt is empty"):
        OpenAICompatBackend(server, "tiny", api_key_env=None).generate("  ")


def test_judge_over_http_records_in_ledger(server, tmp_path):
    from distill.judge import LLMJudge
    from distill.ledger import Ledger, Prices

    raw = {"compute": {"cpu_core_hour_usd": 0.04}, "llms": {"tiny": {"input_per_mtok_usd": 1.0, "output_per_mtok_usd": 2.0}}}
    with Ledger(tmp_path / "l.sqlite", Prices(raw)) as led:
        from registry import load_judge_prompts

        judge = LLMJudge(OpenAICompatBackend(server, "tiny", api_key_env=None), load_judge_prompts(), ledger=led)
        v = judge.judge("faithfulness", evidence="Paris is in France.", claim="Paris is in France.")
        # the echo server replies "echo: ..." -- not yes/no: counted, not dropped
        assert not v.parsed and v.label is None and judge.n_unparseable["faithfulness"] == 1
        (row,) = led.rows()
        assert row["task"] == "faithfulness" and row["cost_usd"] == pytest.approx((42 * 1.0 + 3 * 2.0) / 1e6)


def test_streaming_hands_each_delta_to_on_token(server):
    got: list[str] = []
    g = OpenAICompatBackend(server, "tiny", api_key_env=None).generate("Is it?", max_new_tokens=8, on_token=got.append)
    assert got == ["Yes", ",", " it", " is", " [1]."]  # the answer's leading space is dropped, as in the text
    assert g.text == "Yes, it is [1]." and (g.prompt_tokens, g.completion_tokens) == (40, 5)
    assert g.prefill_s > 0 and g.decode_s >= 0
    body = _Handler.seen[-1][2]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    g = OpenAICompatBackend(server, "no-usage", api_key_env=None).generate("Is it?", on_token=lambda d: None)
    assert g.completion_tokens > 0  # estimated when the server sends no usage
    with pytest.raises(OpenAICompatError, match="context overflow"):
        OpenAICompatBackend(server, "stream-error", api_key_env=None).generate("Is it?", on_token=lambda d: None)
