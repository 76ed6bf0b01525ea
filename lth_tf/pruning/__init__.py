"""Pruning: the TF-MOT schedule, mask computation, wrapping and rewinding."""
