"""Machine reference answers: the resumable answers file, and the OpenAI-compatible generator
against a real chat-completions server on loopback (FastAPI under uvicorn, in a thread) that can be
told to rate-limit, fail, refuse or die. One test runs the embedded SmolLM2."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from auditor.tasks.generate import (
    EndpointRefused,
    GenerationError,
    OpenAIGenerator,
    RequestSpacer,
    generate_answers,
    make_generator,
)

PROMPTS = [
    "Describe your favourite season and why.",
    "Summarise the plot of a film you liked.",
    "What makes a good teacher?",
    "Give advice to a new student.",
    "Explain how to make tea.",
]
ENV_VARIABLES = (
    "AUDITOR_OPENAI_BASE_URL",
    "OPENAI_BASE_URL",
    "AUDITOR_OPENAI_API_KEY",
    "OPENAI_API_KEY",
    "AUDITOR_OPENAI_RPM",
)


# --------------------------------------------------------------------------- the fake endpoint


@dataclass
class FakeEndpoint:
    """What the server saw, and how it should misbehave; the tests set the fields directly."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)  # served first, in order
    die_after: int | None = None  # every request after this many answers 500
    one_choice: bool = False  # ignore ``n``, like some servers do
    empty_answers: dict[str, int] = field(default_factory=dict)  # prompt -> empty answers still to give

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()
        self.die_after = None
        self.one_choice = False
        self.empty_answers.clear()

    def answer(self, prompt: str, k: int) -> str:
        if self.empty_answers.get(prompt, 0) > 0:
            self.empty_answers[prompt] -= 1
            return ""
        return f"answer {k} to: {prompt[:20]}"

    def respond(self, body: dict[str, Any], authorization: str | None) -> JSONResponse:
        prompt = body["messages"][-1]["content"]
        self.requests.append({**body, "prompt": prompt, "authorization": authorization})
        if self.failures:
            status, headers, payload = self.failures.pop(0)
            return JSONResponse(payload, status_code=status, headers=headers)
        if self.die_after is not None and len(self.requests) > self.die_after:
            return JSONResponse({"error": {"message": "the server is down"}}, status_code=500)
        n = 1 if self.one_choice else body.get("n", 1)
        choices = [
            {"index": k, "message": {"role": "assistant", "content": self.answer(prompt, k)}, "finish_reason": "stop"}
            for k in range(n)
        ]
        return JSONResponse({"object": "chat.completion", "model": body["model"], "choices": choices})

    def prompts_asked(self) -> list[tuple[str, int]]:
        return [(request["prompt"], request["n"]) for request in self.requests]


def chat_app(endpoint: FakeEndpoint) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        return endpoint.respond(await request.json(), request.headers.get("authorization"))

    return app


@pytest.fixture(scope="module")
def server():
    endpoint = FakeEndpoint()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))  # the port is ours before uvicorn starts: no race for a free one
    port = listening.getsockname()[1]
    uvicorn_server = uvicorn.Server(uvicorn.Config(chat_app(endpoint), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the fake endpoint did not start"
        time.sleep(0.05)
    endpoint.base_url = f"http://127.0.0.1:{port}/v1"
    yield endpoint
    uvicorn_server.should_exit = True
    thread.join(timeout=10)
    listening.close()


@pytest.fixture
def endpoint(server, monkeypatch):
    """The running fake endpoint, well-behaved and with no requests yet; no OpenAI variables set."""
    for name in ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    server.reset()
    return server


class FakeClock:
    """A monotonic clock that moves only when slept on (or told to), recording every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def generator(endpoint, clock):
    """Unlimited rate and instant sleeps, so that every recorded sleep is a backoff."""
    made = OpenAIGenerator(
        "fake-model",
        base_url=endpoint.base_url,
        backoff_s=0.01,
        requests_per_minute=math.inf,
        clock=clock,
        sleep=clock.sleep,
    )
    yield made
    made.close()


def read_records(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pairs(path) -> Counter:
    return Counter((record["prompt_index"], record["k"]) for record in read_records(path))


# --------------------------------------------------------------------------- the answers file


def test_every_prompt_gets_per_prompt_answers(endpoint, generator, tmp_path):
    out = tmp_path / "answers.jsonl"
    advanced: list[int] = []
    result = generate_answers(PROMPTS, generator, out, per_prompt=2, on_progress=advanced.append)
    records = read_records(out)
    assert (result.written, result.resumed, result.path, result.problems) == (10, 0, out, [])
    assert [(r["prompt_index"], r["k"]) for r in records] == [(i, k) for i in range(5) for k in range(2)]
    assert all(r["prompt"] == PROMPTS[r["prompt_index"]] for r in records)
    assert records[3]["text"] == f"answer 1 to: {PROMPTS[1][:20]}"
    assert records[0]["generator"] == {"kind": "openai", "model": "fake-model", "small_local_model": False}
    assert endpoint.prompts_asked() == [(prompt, 2) for prompt in PROMPTS]
    assert endpoint.requests[0]["max_tokens"] == 200 and endpoint.requests[0]["temperature"] == 0.7
    assert sum(advanced) == 10


@pytest.mark.parametrize(("retry_after", "waited"), [("0", 0.0), ("7", 7.0), ("120", 60.0)])
def test_rate_limited_request_is_retried_after_retry_after(endpoint, generator, clock, tmp_path, retry_after, waited):
    endpoint.failures.append((429, {"Retry-After": retry_after}, {"error": {"message": "slow down"}}))
    result = generate_answers(PROMPTS[:2], generator, tmp_path / "answers.jsonl")
    assert result.written == 2 and len(endpoint.requests) == 3
    assert clock.sleeps == [waited]  # capped at 60 s


def test_server_errors_are_retried_with_exponential_backoff(endpoint, generator, clock, tmp_path):
    endpoint.failures += [(500, {}, {"error": {"message": "oops"}}), (503, {}, "busy")]
    result = generate_answers(PROMPTS[:1], generator, tmp_path / "answers.jsonl")
    assert result.written == 1 and len(endpoint.requests) == 3
    assert clock.sleeps == pytest.approx([0.01, 0.02])


def test_unreachable_endpoint_is_retried_then_reported(endpoint, clock, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    generator = OpenAIGenerator(
        "fake-model",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=2,
        backoff_s=0.01,
        requests_per_minute=math.inf,
        sleep=clock.sleep,
    )
    with pytest.raises(GenerationError, match=r"after 0 of 1 answers.*still failing after 3 attempts.*ConnectError"):
        generate_answers(PROMPTS[:1], generator, tmp_path / "answers.jsonl")
    assert clock.sleeps == pytest.approx([0.01, 0.02])


def test_refusal_is_raised_at_once(endpoint, generator, tmp_path):
    endpoint.failures.append((401, {}, {"error": {"message": "invalid key", "type": "invalid_request_error"}}))
    with pytest.raises(GenerationError, match="401.*invalid key") as raised:
        generate_answers(PROMPTS, generator, tmp_path / "answers.jsonl")
    assert isinstance(raised.value.__cause__, EndpointRefused)
    assert len(endpoint.requests) == 1


def test_refusal_without_openai_error_shape_shows_the_body(endpoint, generator):
    endpoint.failures.append((404, {}, "no such model: fake-model"))
    with pytest.raises(EndpointRefused, match="HTTP 404: .*no such model"):
        generator.generate(PROMPTS[0], 1)


def test_interrupted_run_resumes_with_only_the_missing_answers(endpoint, generator, tmp_path):
    out = tmp_path / "answers.jsonl"
    endpoint.die_after = 2
    message = rf"stopped after 4 of 10 answers \(kept in {out}; run the same command again to resume\)"
    with pytest.raises(GenerationError, match=message):
        generate_answers(PROMPTS, generator, out, per_prompt=2)
    assert pairs(out) == Counter({(i, k): 1 for i in range(2) for k in range(2)})

    endpoint.reset()
    advanced: list[int] = []
    result = generate_answers(PROMPTS, generator, out, per_prompt=2, on_progress=advanced.append)
    assert (result.written, result.resumed) == (6, 4)
    assert endpoint.prompts_asked() == [(prompt, 2) for prompt in PROMPTS[2:]]
    assert pairs(out) == Counter({(i, k): 1 for i in range(5) for k in range(2)})
    assert advanced[0] == 4 and sum(advanced) == 10


def test_unfinished_last_line_is_dropped_and_made_again(endpoint, generator, tmp_path):
    out = tmp_path / "answers.jsonl"
    generate_answers(PROMPTS[:2], generator, out, per_prompt=2)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:25])  # a crash while writing answer (1, 1)
    endpoint.reset()
    result = generate_answers(PROMPTS[:3], generator, out, per_prompt=2)
    assert (result.written, result.resumed) == (3, 3)
    assert endpoint.prompts_asked() == [(PROMPTS[1], 1), (PROMPTS[2], 2)]
    assert pairs(out) == Counter({(i, k): 1 for i in range(3) for k in range(2)})


def test_complete_last_line_without_newline_is_kept(endpoint, generator, tmp_path):
    out = tmp_path / "answers.jsonl"
    generate_answers(PROMPTS[:1], generator, out)
    out.write_text(out.read_text().rstrip("\n"))
    result = generate_answers(PROMPTS[:2], generator, out)
    assert (result.written, result.resumed) == (1, 1)
    assert pairs(out) == Counter({(0, 0): 1, (1, 0): 1})


def test_answers_file_of_other_prompts_is_refused(endpoint, generator, tmp_path):
    out = tmp_path / "answers.jsonl"
    generate_answers(PROMPTS[:2], generator, out)
    with pytest.raises(ValueError, match="prompts changed"):
        generate_answers(["Another task entirely.", *PROMPTS[1:2]], generator, out)
    out.write_text(out.read_text() + "not json\n")
    with pytest.raises(ValueError, match="line 3: not an answer record"):
        generate_answers(PROMPTS[:2], generator, out)


def test_fewer_choices_than_asked_for_are_topped_up(endpoint, generator, tmp_path):
    endpoint.one_choice = True
    result = generate_answers(PROMPTS[:1], generator, tmp_path / "answers.jsonl", per_prompt=3)
    assert result.written == 3
    assert endpoint.prompts_asked() == [(PROMPTS[0], 3), (PROMPTS[0], 2), (PROMPTS[0], 1)]


def test_empty_answer_is_asked_for_again_then_reported(endpoint, generator, tmp_path):
    out = tmp_path / "answers.jsonl"
    endpoint.empty_answers = {PROMPTS[0]: 1, PROMPTS[1]: 2}
    advanced: list[int] = []
    result = generate_answers(PROMPTS[:2], generator, out, on_progress=advanced.append)
    assert result.written == 1 and result.problems == [
        "prompt 1, answer 0: the generator returned an empty answer twice"
    ]
    assert pairs(out) == Counter({(0, 0): 1})
    assert endpoint.prompts_asked() == [(PROMPTS[0], 1), (PROMPTS[0], 1), (PROMPTS[1], 1), (PROMPTS[1], 1)]
    assert sum(advanced) == 2


def test_empty_prompts_are_skipped_and_counted(endpoint, generator, tmp_path, caplog):
    out = tmp_path / "answers.jsonl"
    advanced: list[int] = []
    result = generate_answers(["", PROMPTS[0], "   \n"], generator, out, per_prompt=2, on_progress=advanced.append)
    assert (result.written, result.empty_prompts) == (2, 2)
    assert {r["prompt_index"] for r in read_records(out)} == {1}
    assert "skipping 2 empty prompt(s) of 3" in caplog.text
    assert sum(advanced) == 6


# --------------------------------------------------------------------------- rate limit, keys, specs


def test_requests_are_spaced_by_the_rate_limit(endpoint, clock, tmp_path):
    generator = OpenAIGenerator(
        "fake-model", base_url=endpoint.base_url, requests_per_minute=120, clock=clock, sleep=clock.sleep
    )
    generate_answers(PROMPTS[:3], generator, tmp_path / "answers.jsonl")
    assert len(endpoint.requests) == 3 and clock.sleeps == pytest.approx([0.5, 0.5])
    clock.now += 2.0  # time passed elsewhere: the next request may start at once
    generator.generate(PROMPTS[3], 1)
    assert len(clock.sleeps) == 2


def test_spacer_waits_only_for_what_is_left_of_the_interval(clock):
    spacer = RequestSpacer(30, clock=clock, sleep=clock.sleep)
    spacer.wait()
    clock.now += 0.5
    spacer.wait()
    spacer.wait()
    assert clock.sleeps == pytest.approx([1.5, 2.0])


def test_key_and_base_url_come_from_the_environment(endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://192.0.2.1/v1")  # the auditor's own variable wins
    monkeypatch.setenv("AUDITOR_OPENAI_BASE_URL", endpoint.base_url + "/")
    monkeypatch.setenv("AUDITOR_OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("AUDITOR_OPENAI_RPM", "6000")
    generator = make_generator("openai:fake-model", max_new_tokens=32)
    assert isinstance(generator, OpenAIGenerator)
    assert generator.generate(PROMPTS[0], 1) == [f"answer 0 to: {PROMPTS[0][:20]}"]
    generator.close()
    request = endpoint.requests[0]
    assert (request["authorization"], request["model"], request["max_tokens"]) == ("Bearer sk-test", "fake-model", 32)
    assert request["messages"] == [{"role": "user", "content": PROMPTS[0]}]


def test_loopback_endpoint_needs_no_key_but_a_remote_one_does(endpoint):
    generator = OpenAIGenerator("fake-model", base_url=endpoint.base_url)
    generator.generate(PROMPTS[0], 1)
    generator.close()
    assert endpoint.requests[0]["authorization"] is None
    with pytest.raises(ValueError, match="AUDITOR_OPENAI_API_KEY or \\$OPENAI_API_KEY"):
        OpenAIGenerator("gpt-4o-mini", base_url="https://api.example.com/v1")


def test_make_generator_names_the_accepted_forms(endpoint, tmp_path):
    with pytest.raises(ValueError, match="unknown generator 'gpt4'.*'embedded'.*'local:PATH'.*'openai:MODEL'"):
        make_generator("gpt4")
    with pytest.raises(ValueError, match="is not a directory"):
        make_generator(f"local:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="names no model"):
        make_generator("openai:")


# --------------------------------------------------------------------------- the embedded model


@pytest.mark.lm
def test_embedded_model_answers_the_prompts(tmp_path):
    prompts = ["Name a fruit that is yellow.", "What is the capital of France?"]
    generator = make_generator(None, max_new_tokens=24)
    assert generator.info.to_dict() == {"kind": "local", "model": "smollm2-135m-instruct", "small_local_model": True}
    result = generate_answers(prompts, generator, tmp_path / "answers.jsonl", per_prompt=2)
    records = read_records(tmp_path / "answers.jsonl")
    assert result.written == 4 and pairs(tmp_path / "answers.jsonl") == Counter(
        {(i, k): 1 for i in range(2) for k in range(2)}
    )
    assert all(r["text"].strip() and r["text"].strip() != r["prompt"] for r in records)
