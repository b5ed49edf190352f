"""Shared pytest configuration: hypothesis profiles."""

import os

from hypothesis import HealthCheck, settings

# Parity tests call torch per example: no per-example deadline. Under CI the
# examples are derandomized so that a failure reproduces.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=True, print_blob=True
)
settings.load_profile(
    "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "default"
)
