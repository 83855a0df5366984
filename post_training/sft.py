"""Supervised fine-tuning for stages 1 (codes only) and 2 (codes after a <think> trace).

accelerate launch [--config_file configs/accelerate/cpu.yaml] post_training/sft.py --config configs/stage_1.yaml
python post_training/sft.py --config configs/stage_2.yaml --set training.learning_rate=1e-4
thce train --config configs/stage_1.yaml
"""

from thce.post_training.run import script_main


def main(argv: list[str] | None = None) -> None:
    script_main("sft", argv)


if __name__ == "__main__":
    main()
