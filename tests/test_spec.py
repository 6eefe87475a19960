"""The spec, its names and the closed-form cost model against the built module."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from wrn_search import WRNSpec, build_model

PAPER_COUNTS = {
    "WRN-28-10": 36_479_194,
    "WRN-40-4": 8_949_210,
    "WRN-16-8": 10_961_370,
    "WRN-40-1": 563_930,
}


def module_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def hooked_macs(model: nn.Module, input_size: int, in_channels: int) -> int:
    """MACs counted from real output shapes with forward hooks."""
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(conv_hook)
        elif isinstance(module, nn.Linear):
            module.register_forward_hook(linear_hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, input_size, input_size))
    return total


@pytest.mark.parametrize("name,count", PAPER_COUNTS.items())
def test_paper_parameter_counts(name, count):
    spec = WRNSpec.parse(name)
    assert spec.num_params() == count
    assert module_params(build_model(spec)) == count


def test_wrn_28_10_with_100_classes():
    assert WRNSpec.parse("WRN-28-10").num_params(num_classes=100) == 36_536_884


@pytest.mark.parametrize(
    "name,classes,in_channels,size",
    [
        ("WRN-16-4", 10, 3, 32),
        ("WRN-40-1", 10, 3, 32),  # k=1: identity shortcuts in group 1
        ("WRN-22-2-B(1,3,1)", 100, 3, 32),
        ("WRN-22-2-B(3,1,1)", 10, 1, 8),
        ("WRN-13-2-B(3,1,3)", 10, 3, 17),
        ("WRN-10-1.5-B(3,3)", 10, 1, 8),
        ("WRN-7-3-B(5)", 7, 2, 9),
        ("WRN-16-2.25-B(3,3)-d0.3", 100, 3, 32),
    ],
)
def test_cost_model_matches_module(name, classes, in_channels, size):
    spec = WRNSpec.parse(name)
    model = build_model(spec, classes, in_channels)
    assert spec.num_params(classes, in_channels) == module_params(model)
    assert spec.macs(size, classes, in_channels) == hooked_macs(model, size, in_channels)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    k=st.one_of(st.integers(1, 4), st.floats(0.25, 3.0).map(lambda x: round(x, 2))),
    kernels=st.lists(st.sampled_from([1, 3, 5]), min_size=1, max_size=3).map(tuple),
    classes=st.integers(2, 100),
    in_channels=st.integers(1, 4),
    size=st.integers(8, 20),
)
def test_cost_model_sweep(n, k, kernels, classes, in_channels, size):
    spec = WRNSpec(n, k, kernels)
    model = build_model(spec, classes, in_channels)
    assert spec.num_params(classes, in_channels) == module_params(model)
    assert spec.macs(size, classes, in_channels) == hooked_macs(model, size, in_channels)


def test_identity_shortcut_only_where_shape_is_kept():
    model = build_model(WRNSpec.parse("WRN-16-1"))
    first_group = model.groups[0]
    assert all(block.shortcut is None for block in first_group)
    model = build_model(WRNSpec.parse("WRN-16-2"))
    assert model.groups[0][0].shortcut is not None and model.groups[0][1].shortcut is None
    assert model.groups[1][0].shortcut.stride == (2, 2)


def test_block_structure_dropout_and_bias():
    model = build_model(WRNSpec.parse("WRN-22-2-B(3,1,3)-d0.3"))
    block = model.groups[1][0]
    assert block.conv1.stride == (2, 2) and block.conv1.kernel_size == (3, 3)
    dropouts = [m for m in block.rest if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 2 and all(d.p == 0.3 for d in dropouts)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    assert [c.kernel_size[0] for c in [block.conv1, *[m for m in block.rest if isinstance(m, nn.Conv2d)]]] == [3, 1, 3]


@pytest.mark.parametrize("name,size,in_channels", [("WRN-10-2", 8, 1), ("WRN-13-1-B(1,3,1)", 32, 3),
                                                    ("WRN-16-2-B(3,3)-d0.3", 24, 3)])
def test_forward_backward(name, size, in_channels):
    model = build_model(name, num_classes=10, in_channels=in_channels)
    x = torch.randn(4, in_channels, size, size)
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert model(x).shape == (4, 10)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    "name",
    ["WRN-28-10-B(3,3)", "WRN-40-2-B(3,1,3)", "WRN-22-2-B(1,3,1)-d0.3", "WRN-16-2.5-B(3,3)", "WRN-7-1-B(3)"],
)
def test_name_round_trip(name):
    spec = WRNSpec.parse(name)
    assert spec.name == name
    assert WRNSpec.parse(spec.name) == spec
    assert WRNSpec.from_dict(spec.to_dict()) == spec


def test_parse_forms():
    assert WRNSpec.parse("WRN-28-10") == WRNSpec(4, 10, (3, 3))
    assert WRNSpec.parse("WRN-28-10-B(3,3)-d0.3") == WRNSpec(4, 10, (3, 3), 0.3)
    assert WRNSpec.parse("WRN-28-10", dropout=0.3).dropout == 0.3
    assert WRNSpec.parse("wrn-58-2-b(1,3,1)").blocks_per_group == 6  # the paper's "WRN-40-2-B(1,3,1)"
    spec = WRNSpec.parse("WRN-40-2-B(3,1,3)")
    assert (spec.blocks_per_group, spec.convs_per_block, spec.depth) == (4, 3, 40)


@pytest.mark.parametrize(
    "name,field",
    [
        ("WRN-30-10", "depth"),
        ("WRN-28-2-B(3,3,3)", "depth"),
        ("WRN-28-10-B(2,3)", "kernels"),
        ("WRN-28-10-B(0)", "kernels"),
        ("WRN-28-10-B()", "kernels"),
        ("WRN-28-10-B(a,b)", "kernels"),
        ("WRN-28-0", "widen_factor"),
        ("WRN-28-10-d1.5", "dropout"),
        ("ResNet-50", "name"),
        ("WRN-28", "name"),
    ],
)
def test_bad_names_name_the_field(name, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        WRNSpec.parse(name)


def test_invalid_depth_says_nearest_valid_depths():
    with pytest.raises(ValueError, match="nearest valid depths: 28 or 34"):
        WRNSpec.parse("WRN-30-10")
    with pytest.raises(ValueError, match="nearest valid depths: 13"):
        WRNSpec.parse("WRN-5-1-B(3,3,3)")


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"blocks_per_group": 0}, "blocks_per_group"),
        ({"blocks_per_group": 2.5}, "blocks_per_group"),
        ({"blocks_per_group": 1, "widen_factor": -1}, "widen_factor"),
        ({"blocks_per_group": 1, "widen_factor": float("nan")}, "widen_factor"),
        ({"blocks_per_group": 1, "kernels": (4,)}, "kernels"),
        ({"blocks_per_group": 1, "kernels": ()}, "kernels"),
        ({"blocks_per_group": 1, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_fields(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        WRNSpec(**kwargs)


def test_names_carry_rounded_values_exactly():
    spec = WRNSpec(2, 2.333333333, dropout=0.00004999)
    assert (spec.widen_factor, spec.dropout) == (2.3333, 0.0)
    spec = WRNSpec(2, 1.23456, dropout=0.123456)
    assert spec.name == "WRN-16-1.2346-B(3,3)-d0.1235" and WRNSpec.parse(spec.name) == spec


def test_fractional_k_rounds_channels_and_integer_k_is_exact():
    assert WRNSpec(1, 2.5).widths == (40, 80, 160)
    assert WRNSpec(1, 10).widths == (160, 320, 640)
    assert WRNSpec(1, 2.0).widen_factor == 2 and isinstance(WRNSpec(1, 2.0).widen_factor, int)


def test_activation_memory_estimate_grows_with_width_and_depth():
    small, wide, deep = WRNSpec.parse("WRN-16-2"), WRNSpec.parse("WRN-16-4"), WRNSpec.parse("WRN-28-2")
    assert small.activation_elements() < wide.activation_elements()
    assert small.activation_elements() < deep.activation_elements()
    assert wide.train_memory_bytes(batch_size=128) > wide.train_memory_bytes(batch_size=32)
