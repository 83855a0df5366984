"""Three-stage post-training: SFT for stages 1-2, DPO for stage 3 (`thce.post_training`)."""
