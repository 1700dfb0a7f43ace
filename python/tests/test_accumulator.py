"""gradtail.Accumulator: samples observed one at a time give what the command line gives on
the stacked file; mismatched samples are refused by name and leave the stack intact."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import gradtail
from conftest import DIGITS, bf16_bits, digits, run_cli


def observe_rows(acc, stack):
    k = len(next(iter(stack.values())))
    for i in range(k):
        acc.observe({name: v[i] for name, v in stack.items()})


def test_accumulator_equals_the_cli_on_digits(cli, tmp_path):
    want = run_cli(cli, [DIGITS / "stacked.npz"], tmp_path / "cli", "--backend", "cpu")
    acc = gradtail.Accumulator(spill_dir=tmp_path / "spill")
    observe_rows(acc, digits())
    assert acc.samples == 256
    got = acc.finish(backend="cpu")
    assert got.tensors == want["tensors"]
    assert got.model == want["model"]
    assert got.coords["fc0.weight"]["alpha_block"].shape == (64, 64)
    # The spill folder made inside spill_dir is removed once the analysis is done.
    assert os.listdir(tmp_path / "spill") == []


def test_finish_options_and_bf16_match_analyze():
    bits = {k: bf16_bits(v) for k, v in digits().items()}
    want = gradtail.analyze({k: gradtail.bf16(v) for k, v in bits.items()}, center="median", backend="cpu")
    acc = gradtail.Accumulator()
    for i in range(256):
        acc.observe({k: gradtail.bf16(v[i]) for k, v in bits.items()})
    got = acc.finish(center="median", backend="cpu")
    assert got.tensors == want.tensors
    assert got.model == want.model


def test_ragged_and_mismatched_samples_raise_and_are_not_added():
    rng = np.random.default_rng(0)
    acc = gradtail.Accumulator()
    first = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    acc.observe(first)
    cases = [
        ({"w": np.zeros((4, 2), np.float32), "b": first["b"]}, r"tensor w: sample 1 has shape \(4, 2\) but the first sample had \(4, 3\)"),
        ({"w": first["w"].astype(np.float64), "b": first["b"]}, r"tensor w: sample 1 is F64 but the first sample was F32"),
        ({"w": first["w"], "b": gradtail.bf16(np.zeros(3, np.uint16))}, r"tensor b: sample 1 is BF16"),
        ({"w": first["w"]}, r"tensor b: missing from sample 1"),
        ({"w": first["w"], "b": first["b"], "c": first["b"]}, r"tensor c: not in the first sample"),
        ({"w": first["w"], "b": first["b"].astype(np.int32)}, r"tensor b: dtype int32"),
        ({"w": first["w"], "b": np.zeros(3, np.uint16)}, r"tensor b: dtype uint16 .*gradtail\.bf16"),
    ]
    for sample, message in cases:
        with pytest.raises(ValueError, match=message):
            acc.observe(sample)
    assert acc.samples == 1
    for _ in range(7):
        acc.observe({"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)})
    r = acc.finish(backend="cpu")
    assert [t["name"] for t in r.tensors] == ["w", "b"]
    assert r.summary["samples"] == 8


def test_too_few_samples_keep_the_stack_for_another_finish():
    rng = np.random.default_rng(0)
    acc = gradtail.Accumulator()
    for _ in range(3):
        acc.observe({"w": rng.standard_normal(5)})
    with pytest.raises(ValueError, match=r"\[tensor w\]: only K = 3 samples"):
        acc.finish(backend="cpu")
    acc.observe({"w": rng.standard_normal(5)})
    assert acc.finish(backend="cpu").summary["samples"] == 4
    with pytest.raises(RuntimeError, match="finished"):
        acc.finish()
    with pytest.raises(RuntimeError, match="finished"):
        acc.observe({"w": rng.standard_normal(5)})


def test_nothing_observed_and_bad_samples():
    acc = gradtail.Accumulator()
    with pytest.raises(ValueError, match="no sample observed"):
        acc.finish()
    with pytest.raises(ValueError, match="dict"):
        acc.observe(np.zeros(3))


def test_spilled_files_go_with_the_accumulator(tmp_path):
    acc = gradtail.Accumulator(spill_dir=tmp_path)
    acc.observe({"w": np.zeros(3, np.float32)})
    assert len(os.listdir(tmp_path)) == 1
    del acc
    gc.collect()
    assert os.listdir(tmp_path) == []
    with gradtail.Accumulator(spill_dir=tmp_path) as acc:
        acc.observe({"w": np.zeros(3, np.float32)})
    assert os.listdir(tmp_path) == []


def test_memory_stays_at_one_sample(tmp_path):
    # Each sample is appended to its file as it comes: the files grow by one sample's bytes.
    acc = gradtail.Accumulator(spill_dir=tmp_path)
    acc.observe({"w": np.zeros((100,), np.float32)})
    (spill,) = os.listdir(tmp_path)
    files = [os.path.join(tmp_path, spill, f) for f in os.listdir(tmp_path / spill)]
    size = os.path.getsize(files[0])
    acc.observe({"w": np.ones((100,), np.float32)})
    assert os.path.getsize(files[0]) == size + 400


def test_scalar_samples_stack_like_a_one_dimensional_array():
    x = np.random.default_rng(2).standard_normal(32)
    acc = gradtail.Accumulator()
    for v in x:
        acc.observe({"loss": np.float64(v)})
    got = acc.finish(backend="cpu")
    want = gradtail.analyze({"loss": x}, backend="cpu")
    assert got.summary["inputs"][0]["shape"] == []
    assert got.tensors == want.tensors
