"""Stage configs: one YAML file per stage, parsed into typed dataclasses.

A stage file describes a stage end to end (docs/data_contracts.md), so the same file drives `thce collect`,
`thce train` and the trainer scripts:

    stage: 1
    seed: 42
    data:     {sources: [...], preprocess: {...}, output_dir: ...}
    model:    {name_or_path: ..., precision: auto, lora: null}
    chat:     {template: stage_1, special_tokens: []}
    tracking: {project: thce-training}
    run:      {model_loss: true, early_stopping_patience: null, resume: true}
    training: {...}   # TRL's SFTConfig (stages 1-2) or DPOConfig (stage 3), field for field

Rules: an unknown key in any section is an error naming the key, the section and the file; values are
converted to the field's type (YAML reads `3e-4` as a string; we make it a float); `--set a.b=c`
overrides any value with the same conversion; `save_resolved_config` writes what a run actually used.
Relative paths are relative to the working directory, as with TRL's own scripts.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from thce.utils.errors import UserError
from thce.utils.io import load_yaml, read_yaml, write_atomically
from thce.utils.models import EMBEDDED_MODEL_ID
from thce.utils.stage_layout import RESOLVED_CONFIG, StageLayout

SourceKind = Literal["synthetic", "jsonl", "json", "csv", "parquet", "hf_disk", "mtsamples", "mimic"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
TemplateName = Literal["stage_1", "stage_2", "stage_3"]

# Names from the seed's TRL 0.23-era configs that TRL 1.x no longer accepts. We reject them with the
# current name rather than mapping silently, so a config always reads the way TRL will run it.
RENAMED_TRAINING_KEYS = {
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation": "gradient_accumulation_steps",
    "lr_scheduler": "lr_scheduler_type",
    "max_seq_length": "max_length",
    "max_prompt_length": "max_length (TRL 1.x truncates the prompt+completion as a whole)",
    "evaluation_strategy": "eval_strategy",
    "warmup_ratio": "warmup_steps (a float in [0, 1) is the ratio of total steps)",
}


# TRL/transformers fields whose nonsense values would otherwise pass through to a crash deep in training,
# or to an "untrained" final/: (lowest allowed, whether the lowest itself is excluded).
TRAINING_BOUNDS: dict[str, tuple[float, bool]] = {
    "per_device_train_batch_size": (1, False),
    "per_device_eval_batch_size": (1, False),
    "gradient_accumulation_steps": (1, False),
    "num_train_epochs": (0, True),
    "learning_rate": (0, True),
    "max_length": (1, False),
    "warmup_steps": (0, False),
    "logging_steps": (0, True),
    "save_steps": (0, True),
    "eval_steps": (0, True),
    "save_total_limit": (1, False),
    "max_grad_norm": (0, False),
    "weight_decay": (0, False),
    "beta": (0, True),
    "neftune_noise_alpha": (0, False),
    "dataloader_num_workers": (0, False),
}


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field whose number must lie in [low, high]; checked where configs are read."""
    return field(default=default, metadata={"min": low, "max": high})


@dataclass
class SourceConfig:
    """One data source of a stage; `kind` decides which reader runs and what `options` it accepts."""

    kind: SourceKind
    path: str | None = None
    entries: int | None = bounded(None, 1)  # cap on rows taken from this source (None: all)
    generator: str | None = None  # synthetic sources: which generator (e.g. icd10cm, llm)
    rename: dict[str, str] = field(default_factory=dict)  # source column -> canonical column
    drop: list[str] = field(default_factory=list)  # columns to drop before conversion
    options: dict[str, Any] = field(default_factory=dict)  # reader-specific; the reader validates them


@dataclass
class PreprocessConfig:
    """What `thce preprocess` (and `collect`) does to every record."""

    normalize_text: bool = True
    scrub_phi: bool = True
    invalid_codes: Literal["drop", "flag", "keep"] = "drop"
    min_text_chars: int = bounded(10, 0)
    max_text_chars: int = bounded(20_000, 1)
    require_billable: bool = True  # ICD-10-CM answers must be billable (leaf) codes, not headings
    phi_engine: Literal["presidio", "rules"] = "presidio"  # rules: the pattern rules only, no NER (fast)


@dataclass
class SplitConfig:
    """Held-out evaluation splits written beside train.parquet (all deterministic for the stage seed)."""

    heldout_code_fraction: float = bounded(
        0.02, 0, 1
    )  # share of codes never seen in train (hash of code + seed)
    test_seen_fraction: float = bounded(
        0.015, 0, 1
    )  # share of the other records kept out of train for test_seen.jsonl
    validation_fraction: float = bounded(0.01, 0, 1)
    max_test_records: int = bounded(2000, 0)  # cap per test file; further held-out-code records are dropped
    max_validation_records: int = bounded(1000, 0)


@dataclass
class QualityConfig:
    """Thresholds `thce quality` (and `collect`) check; a failing one makes the command exit non-zero."""

    min_code_validity: float = bounded(1.0, 0, 1)
    max_duplicate_rate: float = bounded(0.0, 0, 1)
    max_phi_residue_rate: float = bounded(0.001, 0, 1)
    min_english_rate: float = bounded(
        0.9, 0, 1
    )  # langdetect reads terse clinical jargon as Latin languages now and then
    min_reasoning_rate: float = bounded(1.0, 0, 1)  # stage 2 and 3 only
    min_preference_consistency: float = bounded(1.0, 0, 1)  # stage 3 only
    max_text_chars: int = bounded(20_000, 1)  # longest text allowed (a 10 MB paste is not a clinical note)
    language_sample: int = bounded(1000, 1)  # langdetect is slow (~5 ms a text): it checks a seeded sample


@dataclass
class CandidateDataConfig:
    """How `collect` builds training examples with candidates (used when `retrieval.enabled`)."""

    gold_insertion_rate: float = 1.0  # share of records whose missed gold codes are inserted into the list
    reasoning: Literal["contrastive", "source"] = "contrastive"  # stages 2-3: short rival-by-rival traces
    rivals: int = 2  # competing candidates a trace explains away, per answer code
    confusion_pair_rate: float = (
        0.5  # stage 3: share of pairs whose rejected answer is the top wrong candidate
    )

    def __post_init__(self) -> None:
        for name in ("gold_insertion_rate", "confusion_pair_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"data.candidates.{name} must be between 0 and 1 (got {getattr(self, name)})")
        if self.rivals < 0:
            raise UserError(f"data.candidates.rivals must be 0 or more (got {self.rivals})")


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    output_dir: str = "data/artefacts/stage_1_final"
    split: SplitConfig = field(default_factory=SplitConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    row_group_size: int = bounded(10_000, 1)  # fixed, so the same seed gives byte-identical parquet
    save_to_disk: bool = False  # also write a `datasets` save_to_disk copy under hf_dataset/
    candidates: CandidateDataConfig = field(default_factory=CandidateDataConfig)


@dataclass
class LoraConfig:
    """Optional LoRA adapters (peft); merged into the base weights when the stage saves `final/`."""

    r: int = bounded(16, 1)
    alpha: int = bounded(32, 1)
    dropout: float = bounded(0.05, 0, 0.99)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelConfig:
    name_or_path: str = EMBEDDED_MODEL_ID
    precision: Precision = "auto"  # auto: bf16 where the device supports it, else fp16 on CUDA, else fp32
    attn_implementation: str = "sdpa"
    lora: LoraConfig | None = None
    compile: bool = False  # torch.compile: 6-14% faster after a long compile; for long runs only


@dataclass
class ChatConfig:
    template: TemplateName = "stage_1"
    special_tokens: list[str] = field(default_factory=list)  # added to the tokenizer, embeddings resized
    system_message: str | None = None  # None: the stage's default system message


@dataclass
class TrackingConfig:
    """Weights & Biases; offline automatically without WANDB_API_KEY, off with training.report_to: none."""

    project: str = "thce-training"
    entity: str | None = None


@dataclass
class RunConfig:
    """THCE's additions to the TRL trainer (these are not TRL fields)."""

    # LM head over the answer positions in one matmul instead of TRL's tiled kernel (faster on CPU).
    model_loss: bool = True
    # Stop when the validation loss has not improved for this many evaluations (needs validation.parquet).
    early_stopping_patience: int | None = bounded(None, 1)
    # Continue from the newest checkpoint-K in training.output_dir when one exists.
    resume: bool = True


@dataclass
class RetrievalConfig:
    """Candidate retrieval (thce.retrieval): which codes a candidate-aware prompt offers the model.

    Lives here because utils cannot import thce.retrieval; the retriever reads it, a checkpoint stores it
    in its thce_config.yaml, and predict/evaluate/serve rebuild the same candidates from it.
    """

    enabled: bool = False  # false: the model writes codes from memory (no candidates in the prompt)
    k: int = 10  # candidates offered per note
    system: Literal["ICD10"] = "ICD10"  # code system searched (CPT/HCPCS need a licensed file: later)
    expand_abbreviations: bool = True  # HTN -> hypertension ... before search (the note itself is unchanged)
    expand_lay_terms: bool = (
        True  # "heart attack" -> + "myocardial infarction", "first visit" -> + "initial encounter"
    )
    split_mentions: bool = True  # one query per sentence / list item / `;` phrase, fused; else the whole note
    per_mention: int = 20  # hits fetched per mention before the mentions' lists are fused
    rrf_c: int = 60  # reciprocal-rank fusion constant: score = sum over lists of 1 / (rrf_c + rank)
    description_max_chars: int = 0  # >0: candidate descriptions cut to this length (middle words) for prompts

    def __post_init__(self) -> None:
        for name in ("k", "per_mention", "rrf_c"):
            if getattr(self, name) < 1:
                raise UserError(f"retrieval.{name} must be at least 1 (got {getattr(self, name)})")
        if self.description_max_chars < 0:
            raise UserError(
                f"retrieval.description_max_chars must be 0 (no trimming) or more (got {self.description_max_chars})"
            )


@dataclass
class StageConfig:
    stage: Literal[1, 2, 3]
    seed: int = bounded(42, 0, 2**32 - 1)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    training: dict[str, Any] = field(default_factory=dict)
    # Not YAML keys: where the config came from and what was overridden, for the resolved copy.
    source_path: str | None = field(default=None, metadata={"internal": True})
    overrides: list[str] = field(default_factory=list, metadata={"internal": True})

    @property
    def trainer_kind(self) -> Literal["sft", "dpo"]:
        return "dpo" if self.stage == 3 else "sft"

    @property
    def layout(self) -> StageLayout:
        """Where this stage's dataset and training run live, and whether they are current."""
        return StageLayout.of(self)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, in YAML order, without the internal bookkeeping fields."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not f.metadata.get("internal")
        }


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> StageConfig:
    """Read a stage YAML, apply `section.key=value` overrides, and return the typed, checked config.

    Raises `UserError` naming the file, section and key for anything unknown or of the wrong type.
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    for override in overrides:
        apply_override(raw, override, path)
    config = build_dataclass(StageConfig, raw, section="top level", file=path)
    config.training = check_training_section(config.training, config.stage, file=path)
    config.source_path = str(path)
    config.overrides = list(overrides)
    return config


def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is an empty one); clear errors otherwise."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{what} file not found: {path}")
    raw = read_yaml(path, what=f"{what} file")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict[str, Any], override: str, file: str | os.PathLike = "<overrides>") -> None:
    """Set `section.key[.key...]=value` in the raw config mapping; list items are addressed by index.

    The value is read as YAML (`true`, `8`, `[a, b]`, `null`), then converted to the field's type when the
    config is built, so `training.learning_rate=1e-4` ends up a float.
    """
    dotted, sep, text = override.partition("=")
    if not sep or not dotted.strip():
        raise UserError(f"override {override!r} is not of the form section.key=value")
    keys = dotted.strip().split(".")
    value = load_yaml(text, f"--set {override!r}") if text.strip() else None
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise UserError(f"override {override!r}: {'.'.join(keys[:depth])} has no item {key}")
            key = int(key)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise UserError(f"override {override!r}: {'.'.join(keys[:depth])} is not a section")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]


def check_training_section(training: dict[str, Any], stage: int, file: str | os.PathLike) -> dict[str, Any]:
    """Check `training:` against TRL's SFTConfig (stages 1-2) or DPOConfig (stage 3) and convert values.

    Every key must be a field of that class; values are converted to the field's declared type. The class
    is constructed for real (which runs TRL's own checks) by `training_arguments`.
    """
    config_class = training_config_class(stage)
    known = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    checked = {}
    for key, value in training.items():
        if key not in known:
            if key in RENAMED_TRAINING_KEYS:
                hint = f"; TRL 1.x calls it '{RENAMED_TRAINING_KEYS[key]}'"
            else:
                close = difflib.get_close_matches(key, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(
                f"{file}: unknown key '{key}' in section 'training' (not a field of trl.{config_class.__name__}){hint}"
            )
        checked[key] = _coerce(value, _field_type(config_class, key), where=f"training.{key}", file=file)
        _check_training_value(key, checked[key], file)
    return checked


def _check_training_value(key: str, value: Any, file: str | os.PathLike) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if key == "max_steps":
        if value == 0 or value < -1:
            raise UserError(
                f"{file}: 'training.max_steps' must be -1 (train for num_train_epochs) or at least 1, got {value}"
            )
        return
    if key not in TRAINING_BOUNDS:
        return
    low, strict = TRAINING_BOUNDS[key]
    if value < low or (strict and value == low):
        bound = f"greater than {low}" if strict else f"at least {low}"
        raise UserError(f"{file}: 'training.{key}' must be {bound}, got {value}")


def training_config_class(stage: int) -> type:
    """TRL's config class for a stage: SFTConfig for 1-2, DPOConfig for 3 (imports TRL, so torch)."""
    if stage == 3:
        from trl import DPOConfig

        return DPOConfig
    from trl import SFTConfig

    return SFTConfig


def training_arguments(config: StageConfig, **extra: Any) -> Any:
    """Construct TRL's SFTConfig/DPOConfig from `config.training` (+ `extra`), as the trainer will."""
    config_class = training_config_class(config.stage)
    values = {**config.training, **extra}
    values.setdefault("output_dir", str(config.layout.output_dir))
    values.setdefault("seed", config.seed)
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{config.source_path}: section 'training' rejected by trl.{config_class.__name__}: {err}"
        ) from err


def save_resolved_config(
    config: StageConfig, directory: str | os.PathLike, name: str = RESOLVED_CONFIG
) -> Path:
    """Write the fully resolved config (with the overrides that produced it) beside a run's outputs."""
    from thce import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Resolved THCE config (thce {__version__})\n"
        f"# from: {config.source_path}\n"
        f"# overrides: {config.overrides or 'none'}\n"
    )
    return write_atomically(directory / name, header + yaml.safe_dump(config.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------------------------------
# Building dataclasses from plain data, with conversions and errors that say where.


def build_dataclass(cls: type, raw: Any, section: str, file: str | os.PathLike) -> Any:
    """Build dataclass `cls` from a mapping, converting values by type and rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise UserError(f"{file}: section '{section}' must be a mapping, got {type(raw).__name__}: {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(fields)}"
            raise UserError(f"{file}: unknown key '{key}' in section '{section}'{hint}")
        where = key if section == "top level" else f"{section}.{key}"
        values[key] = _coerce(value, hints[key], where=where, file=file)
        check_range(
            values[key], fields[key].metadata.get("min"), fields[key].metadata.get("max"), where, file
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"{file}: section '{section}' is missing required key(s): {', '.join(missing)}")
    return cls(**values)


def check_range(
    value: Any, low: float | None, high: float | None, where: str, file: str | os.PathLike
) -> None:
    """Refuse a number outside [low, high] (None: unbounded), naming the file and key."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if low is not None and value < low:
        raise UserError(f"{file}: '{where}' must be at least {low}, got {value}")
    if high is not None and value > high:
        raise UserError(f"{file}: '{where}' must be at most {high}, got {value}")


def _coerce(value: Any, tp: Any, where: str, file: str | os.PathLike) -> Any:
    """Convert a YAML value to the declared type `tp`, or raise a UserError saying where and why."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected: str) -> typing.NoReturn:
        raise UserError(f"{file}: '{where}' must be {expected}, got {value!r}")

    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for member in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, member, where, file)
            except UserError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        fail(" or ".join(_type_name(a) for a in args))
    if value is None:
        fail(_type_name(tp))
    if origin is Literal:
        if value in args:
            return value
        fail(f"one of {', '.join(map(repr, args))}")
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, section=where, file=file)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        fail("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else fail("an integer")
            except ValueError:
                pass
        fail("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        fail("a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        fail("a string")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value).value
        except ValueError:
            fail(f"one of {', '.join(repr(m.value) for m in tp)}")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str) and origin is list:  # `--set x=a` for a list field: one item
            value = [value]
        if not isinstance(value, (list, tuple)):
            fail("a list")
        item_type = args[0] if args else Any
        return [_coerce(v, item_type, f"{where}[{i}]", file) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            fail("a mapping")
        value_type = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, value_type, f"{where}.{k}", file) for k, v in value.items()}
    return value  # a type we do not model (e.g. TRL's callables): TRL checks it on construction


def _field_type(config_class: type, name: str) -> Any:
    try:
        return typing.get_type_hints(config_class)[name]
    except Exception:  # some TRL annotations do not resolve at runtime; fall back to the raw annotation
        annotation = next(f.type for f in dataclasses.fields(config_class) if f.name == name)
        return annotation if not isinstance(annotation, str) else Any


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value
