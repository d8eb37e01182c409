"""The shared pieces of hf_vssl's Accelerate training loops (arguments, data, optimiser, checkpoints)."""
