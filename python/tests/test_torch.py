"""gradtail.torch.GradientRecorder (optional: runs only where torch is installed). The
recorder's samples must be the per-minibatch gradients torch.autograd computes directly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="optional: the torch recorder is tested when torch is installed")

import gradtail  # noqa: E402
import gradtail.torch  # noqa: E402

K = 16


def model_and_batches(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).to(dtype)
    batches = [(torch.randn(8, 6, dtype=dtype), torch.randint(0, 3, (8,))) for _ in range(K)]
    return model, batches


def loss_of(model, x, y):
    return torch.nn.functional.cross_entropy(model(x).float(), y)


def direct_stack(model, batches):
    """The oracle: each minibatch's gradient from torch.autograd.grad, stacked."""
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    rows = [torch.autograd.grad(loss_of(model, x, y), params) for x, y in batches]
    return {n: torch.stack([r[i] for r in rows]) for i, n in enumerate(names)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_recorder_collects_the_minibatch_gradients(dtype):
    model, batches = model_and_batches(dtype)
    want_stack = direct_stack(model, batches)
    if dtype == torch.bfloat16:
        arrays = {n: gradtail.bf16(g.view(torch.int16).numpy()) for n, g in want_stack.items()}
    else:
        arrays = {n: g.numpy() for n, g in want_stack.items()}
    want = gradtail.analyze(arrays, backend="cpu")

    recorder = gradtail.torch.GradientRecorder(model)
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        loss_of(model, x, y).backward()
        recorder.step()
    got = recorder.finish(backend="cpu")
    expected_dtype = "bf16" if dtype == torch.bfloat16 else "f32"
    assert [t["dtype"] for t in got.summary["inputs"]] == [expected_dtype] * 4
    assert got.tensors == want.tensors


def test_accumulated_backward_passes_make_one_sample():
    model, batches = model_and_batches(torch.float32)
    recorder = gradtail.torch.GradientRecorder(model, include=lambda n: n.endswith("weight"))
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        loss_of(model, x[:4], y[:4]).backward()
        loss_of(model, x[4:], y[4:]).backward()
        recorder.step()
    assert recorder.samples == K
    got = recorder.finish(backend="cpu")
    assert [t["name"] for t in got.tensors] == ["0.weight", "2.weight"]
    halves = direct_stack(model, [(x[:4], y[:4]) for x, y in batches])
    others = direct_stack(model, [(x[4:], y[4:]) for x, y in batches])
    summed = {n: (halves[n] + others[n]).numpy() for n in ["0.weight", "2.weight"]}
    ref = gradtail.analyze(summed, backend="cpu")
    # The summed oracle adds in another order than autograd's accumulation: one f32 rounding.
    for a, b in zip(got.tensors, ref.tensors):
        assert a["alpha_time_blocked"] == pytest.approx(b["alpha_time_blocked"], rel=1e-5)


def test_step_without_backward_raises():
    model, _ = model_and_batches(torch.float32)
    recorder = gradtail.torch.GradientRecorder(model)
    with pytest.raises(RuntimeError, match="no gradient arrived"):
        recorder.step()
    recorder.remove()
