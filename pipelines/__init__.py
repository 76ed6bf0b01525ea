"""absl entry points: they parse flags and call the ``lth_tf`` library."""
