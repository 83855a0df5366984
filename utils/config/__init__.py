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

Modules: `sections` (the typed section dataclasses and `StageConfig`), `conversion` (building a dataclass
from YAML: type conversion, unknown keys, ranges), `training` (the `training:` section against TRL's
classes), `loading` (`load_config`, overrides, the resolved copy). Import from `thce.utils.config`.
"""

from thce.utils.config.conversion import bounded, build_dataclass, check_range
from thce.utils.config.loading import apply_override, load_config, read_yaml_mapping, save_resolved_config
from thce.utils.config.sections import (
    CandidateDataConfig,
    ChatConfig,
    DataConfig,
    LoraConfig,
    ModelConfig,
    Precision,
    PreprocessConfig,
    QualityConfig,
    RetrievalConfig,
    RunConfig,
    SourceConfig,
    SourceKind,
    SplitConfig,
    StageConfig,
    TemplateName,
    TrackingConfig,
)
from thce.utils.config.training import (
    RENAMED_TRAINING_KEYS,
    TRAINING_BOUNDS,
    check_training_section,
    training_arguments,
    training_config_class,
)

__all__ = [
    "RENAMED_TRAINING_KEYS",
    "TRAINING_BOUNDS",
    "CandidateDataConfig",
    "ChatConfig",
    "DataConfig",
    "LoraConfig",
    "ModelConfig",
    "Precision",
    "PreprocessConfig",
    "QualityConfig",
    "RetrievalConfig",
    "RunConfig",
    "SourceConfig",
    "SourceKind",
    "SplitConfig",
    "StageConfig",
    "TemplateName",
    "TrackingConfig",
    "apply_override",
    "bounded",
    "build_dataclass",
    "check_range",
    "check_training_section",
    "load_config",
    "read_yaml_mapping",
    "save_resolved_config",
    "training_arguments",
    "training_config_class",
]
