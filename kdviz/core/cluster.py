"""The one way kdviz joins a Ray cluster (or starts a local Ray): the run executor and the shared presentation hub
both connect here, so the code they ship to the cluster (the kdviz package) and the settings are the same."""
from __future__ import annotations

import os
from pathlib import Path

NAMESPACE = "kdviz"  # named actors (the presentation hub) live here: every replica of one hall finds the same ones


def connect(address: str | None = None, **init_kwargs):
    """ray, connected: to `address` ("auto", "ray://head:10001"), or a new local Ray for None / "" / "local";
    init_kwargs go to ray.init (tests: num_cpus=2). A process already connected stays as it is."""
    import ray

    import kdviz

    if not ray.is_initialized():
        env = {key: value for key, value in os.environ.items() if key == "KDVIZ_THREADS"}  # the same sums
        runtime_env = {"py_modules": [str(Path(kdviz.__file__).parent)], "env_vars": env}
        ray.init(address=None if address in (None, "", "local") else address, runtime_env=runtime_env,
                 namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **init_kwargs)
    return ray
