"""Students: output shapes, grey input, the only projection, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vldlib.models.students import STUDENTS, SmallCNN, count_parameters, load_student


@pytest.mark.parametrize(
    "name,size,last,in_chans",
    [
        ("resnet18", 64, "fc", 1),
        ("resnet18", 64, "fc", 3),
        ("resnet50", 64, "fc", 1),
        ("vit_b_32", 64, "heads", 1),
        ("small", 28, "fc", 1),
        ("small", 32, "fc", 3),
    ],
)
def test_output_shape_and_last_layer(name: str, size: int, last: str, in_chans: int) -> None:
    torch.manual_seed(0)
    opts = {"image_size": size} if name == "vit_b_32" else {}
    model = load_student(name, out_dim=24, in_chans=in_chans, **opts).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 24) and out.dtype == torch.float32
    head = getattr(model, last)
    linear = head if isinstance(head, nn.Linear) else head.head
    assert isinstance(linear, nn.Linear) and linear.out_features == 24
    if name == "vit_b_32":
        assert linear.in_features == 768  # paper §5.2: head Linear(768 -> out_dim)
    assert not any(p.requires_grad is False for p in model.parameters())  # untrained, trainable


def test_paper_dimensions() -> None:
    r18 = load_student("resnet18", 768)
    assert (r18.fc.in_features, r18.fc.out_features) == (512, 768)  # paper §5.2: fc 512 -> 768
    assert 11.0e6 < count_parameters(r18) < 12.0e6  # ~11.6M
    assert load_student("resnet50", 1024).fc.in_features == 2048
    # torchvision init as in the paper: BN weight 1 / bias 0
    assert torch.all(r18.bn1.weight == 1) and torch.all(r18.bn1.bias == 0)


def test_small_student_size_and_training_step() -> None:
    torch.manual_seed(0)
    model = load_student("small", 384, in_chans=1)
    assert isinstance(model, SmallCNN)
    assert 100_000 <= count_parameters(model) <= 300_000
    assert count_parameters(load_student("small", 384, in_chans=1, width=16)) < count_parameters(model)
    x = torch.randn(8, 1, 32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    target = torch.randn(8, 384)
    losses = []
    for _ in range(5):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_same_seed_same_init_and_channels_last_equivalence() -> None:
    torch.manual_seed(3)
    a = load_student("small", 16, in_chans=1)
    torch.manual_seed(3)
    b = load_student("small", 16, in_chans=1, channels_last=False)
    x = torch.randn(4, 1, 28, 28)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_errors_list_known_names() -> None:
    with pytest.raises(ValueError, match="resnet18.*small|small.*resnet18"):
        load_student("resnet34", 16)
    assert set(STUDENTS) >= {"resnet18", "resnet50", "vit_b_32", "small"}
    with pytest.raises(ValueError, match="out_dim"):
        load_student("small", 0)
    with pytest.raises(ValueError, match="in_chans"):
        load_student("small", 8, in_chans=0)
    with pytest.raises(ValueError, match="divisible"):
        load_student("vit_b_32", 8, image_size=50)
    with pytest.raises(ValueError, match="bad option"):
        load_student("small", 8, depth=3)


@pytest.mark.parametrize("bf16", [False, True])
def test_small_cnn_pool_before_relu_gives_the_same_numbers(bf16: bool) -> None:
    """SmallCNN applies each ReLU after the max-pool that follows it: output and every gradient are
    bit for bit those of the declared order (features then fc), in fp32 and under bf16 autocast."""
    torch.manual_seed(0)
    model = load_student("small", out_dim=24, in_chans=1, width=8)
    x = torch.randn(16, 1, 28, 28)
    x[:4] = -x[:4].abs()  # windows whose values are all negative (ReLU zeroes them either way)

    def run(forward):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x.contiguous(memory_format=torch.channels_last))
        (out.float() ** 2).sum().backward()
        return out.detach().clone(), [p.grad.clone() for p in model.parameters()]

    fast, fast_grads = run(model)
    ref, ref_grads = run(lambda inp: model.fc(model.features(inp)))  # nn.Sequential: ReLU then pool
    assert torch.equal(fast, ref)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, ref_grads))
