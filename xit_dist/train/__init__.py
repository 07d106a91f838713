"""Training phases: Ray Train TorchTrainer driving DeepSpeed ZeRO engines."""
