"""kdviz.core.models: every registered model on every input shape, and the parameter / size accounting."""
from __future__ import annotations

import pytest
import torch

from kdviz.core.models import ModelSpec, check_spec, count_parameters, create_model, list_models, size_bytes

INPUT_SHAPES = [(1, 28, 28), (1, 8, 8), (3, 32, 32)]  # mnist, digits, cifar
MODEL_NAMES = [info.name for info in list_models()]


def test_registry_has_the_documented_architectures():
    assert {"mlp", "cnn", "resnet"} <= set(MODEL_NAMES)
    assert all(info.description for info in list_models())


@pytest.mark.parametrize("input_shape", INPUT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_maps_every_input_shape_to_class_logits(name, input_shape):
    torch.manual_seed(0)
    model = create_model(ModelSpec(name, width=8, depth=1), input_shape, num_classes=4)
    model.train()  # batch norm in training mode needs more than one example per channel: use a batch of 3
    out = model(torch.randn(3, *input_shape))
    assert out.shape == (3, 4)
    assert torch.isfinite(out).all()
    out.sum().backward()  # and it trains: every parameter gets a gradient
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        single = model(torch.randn(1, *input_shape))
    assert single.shape == (1, 4) and torch.isfinite(single).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_initial_weights(name):
    build = lambda: create_model(ModelSpec(name, 8, 1), (1, 8, 8), 10)  # noqa: E731
    torch.manual_seed(5)
    a = build()
    torch.manual_seed(5)
    b = build()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_hintons_mnist_teacher_has_2_395_210_parameters():
    model = create_model(ModelSpec("mlp", 1200, 2), (1, 28, 28), 10)
    by_hand = (784 * 1200 + 1200) + (1200 * 1200 + 1200) + (1200 * 10 + 10)
    assert by_hand == 2_395_210
    assert count_parameters(model) == by_hand
    assert size_bytes(model) == 4 * by_hand  # float32 weights, no buffers


def test_mlp_describe_spells_out_the_layers():
    assert ModelSpec("mlp", 1200, 2).describe((1, 28, 28), 10) == "MLP 784-1200-1200-10"
    assert ModelSpec("mlp", 16, 1).describe((1, 8, 8), 10) == "MLP 64-16-10"


def test_size_counts_batch_norm_buffers():
    model = create_model(ModelSpec("cnn", 8, 1), (1, 8, 8), 10)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert buffers > 0
    assert size_bytes(model) == 4 * count_parameters(model) + buffers


def test_wider_and_deeper_models_have_more_parameters():
    for name in MODEL_NAMES:
        small = count_parameters(create_model(ModelSpec(name, 8, 1), (3, 32, 32), 10))
        wide = count_parameters(create_model(ModelSpec(name, 16, 1), (3, 32, 32), 10))
        deep = count_parameters(create_model(ModelSpec(name, 8, 2), (3, 32, 32), 10))
        assert small < wide and small < deep, name


@pytest.mark.parametrize("spec, fragment", [
    (ModelSpec("transformer"), "'transformer'"),
    (ModelSpec("mlp", width=0), "got 0"),
    (ModelSpec("mlp", width=-3), "got -3"),
    (ModelSpec("mlp", width=2.5), "got 2.5"),
    (ModelSpec("mlp", width=10_000), "got 10000"),
    (ModelSpec("mlp", depth=0), "got 0"),
    (ModelSpec("cnn", depth=17), "got 17"),
    (ModelSpec("mlp", dropout=1.0), "got 1.0"),
])
def test_bad_specs_are_value_errors_naming_the_value(spec, fragment):
    with pytest.raises(ValueError) as error:
        create_model(spec, (1, 8, 8), 10)
    assert fragment in str(error.value)
    with pytest.raises(ValueError):
        check_spec(spec)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="'vit'") as error:
        check_spec(ModelSpec("vit"))
    assert all(name in str(error.value) for name in MODEL_NAMES)
