"""`configs/eval.yaml`: how `thce evaluate` and `thce baseline` predict and score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thce.utils.config import RetrievalConfig, apply_override, bounded, build_dataclass, read_yaml_mapping
from thce.utils.errors import UserError


@dataclass
class EvalConfig:
    """`configs/eval.yaml`: how `thce evaluate` predicts and scores (every key overridable by `--set`)."""

    datasets: list[str] = field(default_factory=list)
    batch_size: int = 32
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    max_new_tokens: int | None = bounded(None, 1)
    num_beams: int = 1
    top_k: int = 5
    constrained: bool = True
    force_format: bool = True
    max_codes: int = 5
    think_budget: int | None = bounded(None, 0)
    # with candidates: re-choose the first code (Predictor); null: the model's retrieval section's setting
    rerank: Literal["none", "model", "fusion"] | None = None
    fusion_weight: float | None = None  # rerank=fusion: weight of the retriever's -log(rank) prior
    baselines: list[str] = field(default_factory=lambda: ["random", "keyword", "most_frequent", "rule_based"])
    train_data: str | None = None
    bootstrap_resamples: int = 1000
    seed: int = 42
    limit: int | None = bounded(None, 1)
    report: bool = True
    # Candidate retrieval: its recall@k is reported beside the model (a checkpoint's own section wins).
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    def __post_init__(self) -> None:
        from thce.evaluation.baseline import METHODS

        for name in ("batch_size", "num_beams", "top_k", "max_codes", "bootstrap_resamples"):
            if getattr(self, name) < 1:
                raise UserError(f"eval config: {name} must be at least 1 (got {getattr(self, name)})")
        unknown = [m for m in self.baselines if m not in METHODS]
        if unknown:
            raise UserError(
                f"eval config: unknown baseline {unknown[0]!r}; expected some of {', '.join(METHODS)}"
            )
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise UserError(
                f"eval config: precision must be auto, bf16, fp16 or fp32 (got {self.precision!r})"
            )


def load_eval_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), **options: Any
) -> EvalConfig:
    """Read `path` (or the defaults), apply `key=value` overrides, then keyword `options`.

    Parsed by the same typed loader as the stage configs: unknown keys and wrong types are errors naming
    the key and the file, and values are converted to each field's type (`--set batch_size=16` is an int).
    """
    where = str(path) if path else "eval defaults"
    values = read_yaml_mapping(path, what="eval config") if path is not None else {}
    for override in overrides:
        apply_override(values, override.removeprefix("eval."), where)
    values.update({k: v for k, v in options.items() if v is not None})
    return build_dataclass(EvalConfig, values, section="eval", file=where)
