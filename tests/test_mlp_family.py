import pytest
import torch

from jointnas.families.mlp import MLPFamily


@pytest.mark.parametrize("arch", [
    {"depth": 1, "width": 16},
    {"depth": 3, "width": 1024},
    {"depth": 2, "width_1": 40, "width_2": 64, "activation": "tanh", "dropout_1": 0.2},
])
def test_mlp_closed_form_cost_is_fvcores_count(arch):
    fam = MLPFamily()
    assert fam.cost(arch) == fam.fvcore_cost(arch)


def test_mlp_builds_per_layer_widths_activations_and_dropout():
    fam = MLPFamily()
    model = fam.build({"depth": 2, "width_1": 40, "width_2": 8, "activation_2": "tanh", "dropout_1": 0.5},
                      num_classes=3, in_channels=5, input_size=1)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "Tanh", "Linear"]
    assert model(torch.randn(4, 5)).shape == (4, 3)
