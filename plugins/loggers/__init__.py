"""Logger plugins (``harness run --log NAME``): each implements ``harness_run_finished``."""
