"""Machine reference answers for a task: an LLM answers the task's own prompts.

An audit judges a delivery best against machine text written for the *same* prompts (same topic,
length and register), not against a generic corpus, so the machine reference of a task is made
from the task's prompts. Making it is slow (a local model on a CPU) or paid and rate-limited (an
endpoint), and long runs get interrupted: every answer is therefore appended to a JSON Lines file
the moment it exists, and a re-run of the same command skips whatever the file already holds.

Generators: the embedded SmolLM2-135M-Instruct (offline and always available) or any local
transformers causal LM, and any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM,
llama.cpp server, Ollama ...). A small local model does not write like the LLMs crowd workers paste
from; ``GeneratorInfo.small_local_model`` travels with every answer so reports can say so.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from detectors.store import EMBEDDED_LM, resolve_causal_lm

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

EMBEDDED_SPECS = ("embedded", EMBEDDED_LM)
ACCEPTED_SPECS = (
    "'embedded' (SmolLM2-135M-Instruct, the default), 'local:PATH' or the path of a directory holding "
    "a transformers causal LM, 'openai:MODEL' (an OpenAI-compatible chat-completions endpoint)"
)
TEMPERATURE = 0.7
TOP_P = 0.9
REPETITION_PENALTY = 1.1

BASE_URL_ENVS = ("AUDITOR_OPENAI_BASE_URL", "OPENAI_BASE_URL")
API_KEY_ENVS = ("AUDITOR_OPENAI_API_KEY", "OPENAI_API_KEY")
RPM_ENV = "AUDITOR_OPENAI_RPM"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_RPM = 60.0
MAX_BACKOFF_S = 60.0


class GenerationError(RuntimeError):
    """Generation stopped part-way; the answers made so far are kept and a re-run resumes."""


class EndpointError(RuntimeError):
    """The chat-completions endpoint stayed unavailable through every retry, or answered nonsense."""


class EndpointRefused(EndpointError):  # noqa: N818 - names what happened, like ModelNotAvailable
    """The endpoint rejected the request itself (bad key, unknown model ...): retrying cannot help."""


@dataclass(frozen=True)
class GeneratorInfo:
    kind: str  # "local" or "openai"
    model: str  # local path or embedded name, or the endpoint's model name
    small_local_model: bool  # its style is not that of the LLMs crowd workers use

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(Protocol):
    info: GeneratorInfo

    def generate(self, prompt: str, n: int) -> list[str]:
        """``n`` answers to one prompt (fewer, or empty ones, when the model gave no more)."""
        ...


def make_generator(
    spec: str | None, *, cache_dir: Path | None = None, max_new_tokens: int = 200, seed: int = 0
) -> Generator:
    """The generator a ``--generator`` value names; see ``ACCEPTED_SPECS``. ``seed`` applies to
    local models only."""
    if spec is None or spec in EMBEDDED_SPECS:
        path = resolve_causal_lm(EMBEDDED_LM, cache_dir)
        return LocalGenerator(path, name=EMBEDDED_LM, max_new_tokens=max_new_tokens, seed=seed)
    if spec.startswith("openai:"):
        model = spec.removeprefix("openai:").strip()
        if not model:
            raise ValueError(f"generator {spec!r} names no model: use 'openai:MODEL', e.g. 'openai:gpt-4o-mini'")
        return OpenAIGenerator(model, max_new_tokens=max_new_tokens)
    path_text = spec.removeprefix("local:")
    if Path(path_text).expanduser().is_dir():
        return LocalGenerator(str(Path(path_text).expanduser()), max_new_tokens=max_new_tokens, seed=seed)
    if spec.startswith("local:"):
        raise ValueError(f"generator {spec!r}: {path_text!r} is not a directory holding a transformers causal LM")
    raise ValueError(f"unknown generator {spec!r}; accepted forms: {ACCEPTED_SPECS}")


# --------------------------------------------------------------------------- local models


class LocalGenerator:
    """A transformers causal LM on the CPU, loaded once; answers are sampled, one batch per prompt."""

    def __init__(self, path: str, *, name: str | None = None, max_new_tokens: int = 200, seed: int = 0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.info = GeneratorInfo(kind="local", model=name or path, small_local_model=True)
        self.max_new_tokens = max_new_tokens
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, device_map="cpu").eval()
        pad_id = self._tokenizer.pad_token_id
        self._pad_id = pad_id if pad_id is not None else self._tokenizer.eos_token_id
        torch.manual_seed(seed)  # once: the run as a whole is reproducible, answers still differ

    def generate(self, prompt: str, n: int) -> list[str]:
        import torch

        inputs = self._encode(prompt)
        with torch.inference_mode():
            output = self._model.generate(
                **inputs,
                do_sample=True,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                repetition_penalty=REPETITION_PENALTY,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self._pad_id,
            )
        answers = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self._tokenizer.batch_decode(answers, skip_special_tokens=True)]

    def _encode(self, prompt: str) -> Any:
        if self._tokenizer.chat_template:
            messages = [{"role": "user", "content": prompt}]
            return self._tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        return self._tokenizer(prompt, return_tensors="pt")


# --------------------------------------------------------------------------- endpoints


class RequestSpacer:
    """Starts requests at least ``60 / requests_per_minute`` seconds apart: evenly spaced requests
    stay under a per-minute quota without reading the provider's rate-limit headers."""

    def __init__(
        self,
        requests_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests per minute must be positive, not {requests_per_minute}")
        self.interval_s = 60.0 / requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_start: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._next_start is not None and now < self._next_start:
            self._sleep(self._next_start - now)
            now = self._next_start
        self._next_start = now + self.interval_s


class OpenAIGenerator:
    """An OpenAI-compatible ``/chat/completions`` endpoint, with retries and a request spacer.

    Connection errors, timeouts, 429 and 5xx are retried with exponential backoff (or the
    server's ``Retry-After``); any other error status is a refusal and raised at once."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_new_tokens: int = 200,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        requests_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        httpx = _import_httpx()
        self.info = GeneratorInfo(kind="openai", model=model, small_local_model=False)
        self.url = (base_url or _first_env(BASE_URL_ENVS) or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self.max_new_tokens = max_new_tokens
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._spacer = RequestSpacer(requests_per_minute or _rpm_from_env(), clock, sleep)
        self._client = httpx.Client(headers=_auth_headers(api_key, self.url), timeout=timeout_s)

    def generate(self, prompt: str, n: int) -> list[str]:
        answers: list[str] = []
        while len(answers) < n:
            # Some servers ignore ``n`` and return one choice: ask again for the rest.
            more = self._complete(prompt, n - len(answers))
            if not more:
                break
            answers += more
        return answers[:n]

    def close(self) -> None:
        self._client.close()

    def _complete(self, prompt: str, n: int) -> list[str]:
        payload = {
            "model": self.info.model,
            "messages": [{"role": "user", "content": prompt}],
            "n": n,
            "temperature": TEMPERATURE,
            "max_tokens": self.max_new_tokens,
        }
        body = self._post(payload)
        try:
            return [(choice.get("message") or {}).get("content") or "" for choice in body["choices"]]
        except (KeyError, TypeError, AttributeError) as error:
            raise EndpointError(f"{self.url} answered without choices: {_truncate(json.dumps(body))}") from error

    def _post(self, payload: dict[str, Any]) -> Any:
        failure = _Failure("no attempt made")
        for attempt in range(self.max_retries + 1):
            self._spacer.wait()
            outcome = self._attempt(payload)
            if not isinstance(outcome, _Failure):
                return outcome
            failure = outcome
            if attempt < self.max_retries:
                delay = self._backoff_s(attempt, failure.retry_after_s)
                log.warning("%s: %s; retrying in %.1f s", self.url, failure.reason, delay)
                self._sleep(delay)
        raise EndpointError(f"{self.url} still failing after {self.max_retries + 1} attempts ({failure.reason})")

    def _attempt(self, payload: dict[str, Any]) -> Any:
        """The response body, or a :class:`_Failure` worth retrying; raises on a refusal."""
        httpx = _import_httpx()
        try:
            response = self._client.post(self.url, json=payload)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            return _Failure(f"{type(error).__name__}: {error}")
        if response.is_success:
            return _json_body(response, self.url)
        reason = f"HTTP {response.status_code}: {_error_message(response)}"
        if not _retryable(response.status_code):
            raise EndpointRefused(f"{self.url} refused the request ({reason})")
        return _Failure(reason, _retry_after_s(response))

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        wanted = retry_after_s if retry_after_s is not None else self.backoff_s * 2**attempt
        return min(wanted, MAX_BACKOFF_S)


@dataclass
class _Failure:
    reason: str
    retry_after_s: float | None = None


def _import_httpx() -> Any:
    # httpx is needed only for endpoints; importing it here keeps local generation free of it.
    try:
        import httpx
    except ImportError as error:
        raise ModuleNotFoundError("an OpenAI-compatible endpoint needs httpx: pip install httpx") from error
    return httpx


def _first_env(names: Sequence[str]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def _rpm_from_env() -> float:
    value = os.environ.get(RPM_ENV)
    if not value:
        return DEFAULT_RPM
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"${RPM_ENV} must be a number of requests per minute, not {value!r}") from None


def _auth_headers(api_key: str | None, url: str) -> dict[str, str]:
    key = api_key or _first_env(API_KEY_ENVS)
    if key:
        return {"Authorization": f"Bearer {key}"}
    if _is_loopback(url):
        return {}  # a local server (vLLM, llama.cpp, Ollama) usually wants no key
    raise ValueError(f"no API key for {url}: set ${API_KEY_ENVS[0]} or ${API_KEY_ENVS[1]}")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to the backoff


def _error_message(response: httpx.Response) -> str:
    """OpenAI's ``{"error": {"message": ...}}``, else the body text, shortened."""
    try:
        error = response.json()["error"]
        message = error["message"] if isinstance(error, dict) else error
    except (ValueError, KeyError, TypeError):
        message = response.text
    return _truncate(str(message).strip() or response.reason_phrase)


def _json_body(response: httpx.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise EndpointError(f"{url} answered with something other than JSON: {_truncate(response.text)}") from error


def _truncate(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


# --------------------------------------------------------------------------- the answers file


@dataclass
class GenerationResult:
    written: int  # answers generated in this run
    resumed: int  # answers already in the file from an earlier run (skipped)
    path: Path
    empty_prompts: int = 0  # prompts skipped because they hold no text
    problems: list[str] = field(default_factory=list)  # answers that came back empty twice, not written


def generate_answers(
    prompts: Sequence[str],
    generator: Generator,
    out_file: Path,
    per_prompt: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> GenerationResult:
    """``per_prompt`` answers to every non-empty prompt, appended to ``out_file`` (JSON Lines) as
    they are made; answers already in the file are kept and not made again.

    ``on_progress`` receives increments (resumed answers first, then each prompt's answers, skipped
    empty prompts included) summing to ``len(prompts) * per_prompt`` when the run completes.
    Raises :class:`GenerationError` when the generator fails; what was written stays."""
    if per_prompt < 1:
        raise ValueError(f"per_prompt must be at least 1, not {per_prompt}")
    out_file = Path(out_file)
    progress = on_progress or (lambda _: None)
    done = _answers_on_file(out_file, prompts, generator.info)
    result = GenerationResult(written=0, resumed=0, path=out_file)
    todo = _missing_answers(prompts, per_prompt, done, result)
    total = (len(prompts) - result.empty_prompts) * per_prompt
    if result.resumed or result.empty_prompts:
        progress(result.resumed + result.empty_prompts * per_prompt)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("a", encoding="utf-8") as sink:
        for index, ks in todo:
            try:
                answers = _answers_to(generator, prompts[index], len(ks))
            except Exception as error:
                kept = result.resumed + result.written
                raise GenerationError(
                    f"generation stopped after {kept} of {total} answers (kept in {out_file}; "
                    f"run the same command again to resume): {str(error) or type(error).__name__}"
                ) from error
            _write_answers(sink, index, ks, prompts[index], answers, generator.info, result)
            progress(len(ks))
    return result


def _missing_answers(
    prompts: Sequence[str], per_prompt: int, done: set[tuple[int, int]], result: GenerationResult
) -> list[tuple[int, list[int]]]:
    """For each prompt with answers to make, its index and the missing answer numbers ``k``;
    counts the empty prompts and the answers already made into ``result``."""
    todo = []
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            result.empty_prompts += 1
            continue
        missing = [k for k in range(per_prompt) if (index, k) not in done]
        result.resumed += per_prompt - len(missing)
        if missing:
            todo.append((index, missing))
    if result.empty_prompts:
        log.warning("skipping %d empty prompt(s) of %d", result.empty_prompts, len(prompts))
    return todo


def _answers_to(generator: Generator, prompt: str, n: int) -> list[str]:
    """``n`` answers, each empty one asked for once more; those still empty stay empty."""
    answers = [text.strip() for text in generator.generate(prompt, n)][:n]
    answers += [""] * (n - len(answers))
    empty = [i for i, text in enumerate(answers) if not text]
    if empty:
        again = [text.strip() for text in generator.generate(prompt, len(empty))]
        for i, text in zip(empty, again, strict=False):
            answers[i] = text
    return answers


def _write_answers(
    sink: Any,
    index: int,
    ks: list[int],
    prompt: str,
    answers: list[str],
    info: GeneratorInfo,
    result: GenerationResult,
) -> None:
    for k, text in zip(ks, answers, strict=True):
        if not text:
            problem = f"prompt {index}, answer {k}: the generator returned an empty answer twice"
            log.warning(problem)
            result.problems.append(problem)
            continue
        record = {"prompt_index": index, "k": k, "prompt": prompt, "text": text, "generator": info.to_dict()}
        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        sink.flush()  # a crash loses at most the answer being made
        result.written += 1


def _answers_on_file(path: Path, prompts: Sequence[str], info: GeneratorInfo) -> set[tuple[int, int]]:
    """The ``(prompt_index, k)`` pairs an earlier run wrote. An unfinished last line (a crash while
    writing) is cut off so that appending continues on a clean line; any other broken line is an
    error, since the file is then not one this function wrote."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    *lines, tail = data.split(b"\n")  # ``tail`` is b"" when the file ends with a newline
    records = [_parse_line(line, path, number) for number, line in enumerate(lines, 1) if line.strip()]
    if tail.strip():
        records += _finish_last_line(path, data, tail)
    for record in records:
        _check_prompt(record, prompts, path)
    if any(record.get("generator") != info.to_dict() for record in records):
        log.warning("%s holds answers of another generator; this run adds answers of %s", path, info.model)
    return {(record["prompt_index"], record["k"]) for record in records}


def _finish_last_line(path: Path, data: bytes, tail: bytes) -> list[dict[str, Any]]:
    try:
        record = _parse_line(tail, path, data.count(b"\n") + 1)
    except ValueError:
        log.warning("%s: dropping an unfinished last line (an interrupted run); it is made again", path)
        with path.open("r+b") as file:
            file.truncate(len(data) - len(tail))
        return []
    with path.open("ab") as file:
        file.write(b"\n")
    return [record]


def _parse_line(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("prompt_index"), int)
        and isinstance(record.get("k"), int)
        and isinstance(record.get("text"), str)
    )
    if not valid:
        raise ValueError(f"{path}, line {number}: not an answer record; write the answers to another file")
    assert isinstance(record, dict)  # for mypy: ``valid`` checked it
    return record


def _check_prompt(record: dict[str, Any], prompts: Sequence[str], path: Path) -> None:
    index = record["prompt_index"]
    if not 0 <= index < len(prompts) or record.get("prompt") != prompts[index]:
        raise ValueError(
            f"{path} holds an answer to a different prompt {index}: the prompts changed since it was "
            "written; write the answers to another file (or delete this one)"
        )
