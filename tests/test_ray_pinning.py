"""A run handed to a Ray cluster is pinned in the app: device "auto" resolved against the cluster (and the GPU asked
for), so a worker with other hardware trains what the app budgeted."""
from __future__ import annotations

import dataclasses

from kdviz.core.engine import DistillConfig
from kdviz.experiments.capacity import CapacityConfig
from kdviz.runs.executors import _device_of, pinned


def test_auto_becomes_the_clusters_device_and_an_explicit_one_is_kept():
    assert pinned(DistillConfig(device="auto"), has_gpu=True).device == "cuda"
    assert pinned(DistillConfig(device="auto"), has_gpu=False).device == "cpu"
    assert pinned(DistillConfig(device="cpu"), has_gpu=True).device == "cpu"
    config = DistillConfig(device="auto", temperature=7.0)
    assert dataclasses.replace(pinned(config, True), device="auto") == config  # nothing else changes


def test_an_experiments_distillation_is_pinned_too():
    experiment = CapacityConfig(DistillConfig(device="auto"))
    assert _device_of(experiment) == "auto"
    assert _device_of(pinned(experiment, has_gpu=True)) == "cuda"
    assert pinned(experiment, has_gpu=True).distill.device == "cuda"
