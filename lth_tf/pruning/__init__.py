"""Pruning: which layers are prunable, the TF-MOT schedule, mask computation, wrapping and
rewinding."""
