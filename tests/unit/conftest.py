"""Hypothesis profiles for the unit tests.

`ci` (the default) keeps the whole folder well under a minute on two cores: few examples,
derandomized so a run is reproducible, no example database written into the work tree.
`fuzz` is for a long local hunt: `HYPOTHESIS_PROFILE=fuzz pytest tests/unit/test_fuzz.py`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# the per-example time budget of the fuzz tests: any input ends as problems or a value within it
EXAMPLE_DEADLINE_MS = 2000

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=EXAMPLE_DEADLINE_MS,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=EXAMPLE_DEADLINE_MS,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
