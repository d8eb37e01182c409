"""hf_vssl's training jobs (pretraining, finetuning, distillation) and the one Accelerate loop they share
(:mod:`hf_vssl.training.loop`), with their arguments, optimiser settings and checkpoints."""
