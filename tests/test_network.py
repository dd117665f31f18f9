import pytest
import torch

from mnist_ann.network import MLP


def test_recipe_layers_and_parameter_count():
    net = MLP()
    linears = [layer for layer in net.layers if isinstance(layer, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(784, 128), (128, 64), (64, 10)]
    assert sum(p.numel() for p in net.parameters()) == 109_386


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (5, 784)])
def test_images_or_flat_vectors_give_one_logit_per_class(shape):
    assert MLP()(torch.randn(shape)).shape == (5, 10)


def test_outputs_are_raw_logits_not_probabilities():
    logits = MLP()(torch.randn(64, 784) * 10)
    assert (logits < 0).any()
    assert not torch.allclose(logits.sum(dim=1), torch.ones(64))


def test_no_hidden_layer_is_a_linear_model():
    net = MLP(hidden_sizes=[])
    assert [type(layer).__name__ for layer in net.layers] == ["Flatten", "Linear"] and net(
        torch.randn(3, 784)
    ).shape == (3, 10)


def test_hidden_sizes_are_configurable():
    net = MLP(hidden_sizes=[32, 16, 8])
    assert net(torch.randn(2, 784)).shape == (2, 10)
    assert sum(isinstance(layer, torch.nn.ReLU) for layer in net.layers) == 3
