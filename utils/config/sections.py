"""The sections of a stage config, as typed dataclasses (the YAML layout is in `thce.utils.config`).

A field made with `bounded` must hold a number in its range; `build_dataclass` checks it where the YAML is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from thce.utils.config.conversion import bounded, plain
from thce.utils.errors import UserError
from thce.utils.models import EMBEDDED_MODEL_ID
from thce.utils.stage_layout import StageLayout

SourceKind = Literal["synthetic", "jsonl", "json", "csv", "parquet", "hf_disk", "mtsamples", "mimic"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
TemplateName = Literal["stage_1", "stage_2", "stage_3"]


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
    # torch.compile with dynamic shapes (post_training/model_setup.compile_arguments): SFT steps 1.2-2x, DPO
    # steps 1.3-1.6x faster after a 2-4 minute first compile on 2 cores; for long runs only
    compile: bool = False


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
        True  # "heart attack" -> + "myocardial infarction", "pink eye" -> + "conjunctivitis"
    )
    # "no coma", "negative for coma" -> "without coma" before search (BM25 drops "no"; the list says "without")
    negation_aware: bool = True
    # "return visit" -> "subsequent encounter" before search, and among a mention's hits that differ only in
    # the 7th character, the one for the encounter it states first
    encounter_aware: bool = True
    # what a mention's silence implies: a category's unspecified code above a sibling claiming words the mention
    # lacks, accidental intent above self-harm / assault / undetermined when no intent is stated
    prefer_unspecified: bool = True
    split_mentions: bool = True  # one query per sentence / list item / `;` phrase, fused; else the whole note
    per_mention: int = 20  # hits fetched per mention before the mentions' lists are fused
    rrf_c: int = 60  # reciprocal-rank fusion constant: score = sum over lists of 1 / (rrf_c + rank)
    # Each mention's hits reordered by meaning (retrieval/dense.py): a sentence-transformers model, by name
    # ("all-MiniLM-L6-v2", shipped on PyPI) or directory; null keeps BM25's order. A hit scores its cosine
    # similarity to the mention + dense_prior / its BM25 rank.
    dense_model: str | None = None
    dense_prior: float = 0.4
    description_max_chars: int = 0  # >0: candidate descriptions cut to this length (middle words) for prompts
    # After generating, the first code is chosen again among the offered ones (inference/candidate_scores.py):
    # "fusion" by the model's score of each offered code plus the prior -fusion_weight * log(retriever rank),
    # "model" by the model's score alone, "none" keeps the generated answer.
    rerank: Literal["none", "model", "fusion"] = "fusion"
    fusion_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.dense_prior < 0:
            raise UserError(f"retrieval.dense_prior must be 0 or more (got {self.dense_prior})")
        if self.fusion_weight < 0:
            raise UserError(f"retrieval.fusion_weight must be 0 or more (got {self.fusion_weight})")
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
            f.name: plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not f.metadata.get("internal")
        }
