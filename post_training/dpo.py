"""Preference optimisation for stage 3 (DPO, loss apo_zero), starting from stage 2's final model.

accelerate launch [--config_file configs/accelerate/cpu.yaml] post_training/dpo.py --config configs/stage_3.yaml
python post_training/dpo.py --config configs/stage_3.yaml
thce train --config configs/stage_3.yaml
"""

from thce.post_training.run import script_main


def main(argv: list[str] | None = None) -> None:
    script_main("dpo", argv)


if __name__ == "__main__":
    main()
