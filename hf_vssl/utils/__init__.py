"""Small helpers shared across hf_vssl."""
