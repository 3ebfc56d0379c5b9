"""Tests run in float64 so that symbolic and autodiff results agree to ~1e-10."""

import os

# Several CPU devices, so that sharded calls can be tested on one machine.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from hypothesis import HealthCheck, settings  # noqa: E402

# CI runs more examples than a local run, and the slow cases too; at 40 examples
# .ci/run took 14 of its 15 minutes on a 2-core machine. Its examples are the same
# on every run (derandomize), so that its verdict is the commit's; a local run
# draws new ones each time, which is how the property tests find what is left.
settings.register_profile("ci", max_examples=32, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow (CI=true does)")


def pytest_collection_modifyitems(config, items):
    # Slow cases run in CI (CI=true, as .ci/run sets it) and with --runslow or -m slow.
    if os.environ.get("CI") or config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    import pytest

    skip = pytest.mark.skip(reason="slow: runs in CI, or locally with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
