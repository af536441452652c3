import pytest
import torch

from digitrec.errors import DigitrecError
from digitrec.nn.models.registry import create_model, list_models, model_config


def test_required_models_are_registered():
    assert {"seed-cnn", "lenet5", "torch-example", "default"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_images_to_logits_and_learns(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(8, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (8, 10)
    assert not torch.allclose(logits.softmax(1).sum(1), logits.sum(1))  # logits, not probabilities
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_config_rebuilds_the_same_architecture(name):
    model = create_model(name)
    again = create_model(name, **model_config(model))
    assert again.model_name == name
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes


def test_seed_cnn_is_exactly_the_seed_network():
    shapes = [tuple(p.shape) for p in create_model("seed-cnn").parameters()]
    assert shapes == [(6, 1, 3, 3), (6,), (16, 6, 3, 3), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84), (10,)]


def test_torch_example_matches_the_pytorch_example():
    shapes = [tuple(p.shape) for p in create_model("torch-example").parameters()]
    assert shapes == [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 9216), (128,), (10, 128), (10,)]


def test_lenet5_layers():
    shapes = [tuple(p.shape) for p in create_model("lenet5").parameters()]
    assert shapes[0] == (6, 1, 5, 5) and shapes[2] == (16, 6, 5, 5) and shapes[4] == (120, 400)


def test_default_widths_are_configurable():
    model = create_model("default", widths=[8, 16])  # a list, as JSON gives it back
    assert model.config.widths == (8, 16)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_default_depth_adds_full_resolution_convolutions():
    shallow, deep = create_model("default", widths=(8, 16)), create_model("default", widths=(8, 16), depth=2)
    convs = [m for m in deep.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and len([m for m in shallow.modules() if isinstance(m, torch.nn.Conv2d)]) == 2
    assert deep(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_default_kernel_size_keeps_the_shapes():
    model = create_model("default", widths=(8, 16), kernel=5)
    assert {m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d)} == {(5, 5)}
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(DigitrecError, match="odd"):
        create_model("default", kernel=4)


def test_unknown_model_or_option_is_a_clear_error():
    with pytest.raises(DigitrecError, match="unknown model 'nope'.*default"):
        create_model("nope")
    with pytest.raises(DigitrecError, match="no option"):
        create_model("default", kernels=5)
