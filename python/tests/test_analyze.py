"""gradtail.analyze against the `gradtail analyze` command line on the digits gradients: the
CPU engine is deterministic, so every summary record must be equal, not just close."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import gradtail
from conftest import DIGITS, bf16_bits, digits, read_safetensors, run_cli, write_safetensors


def test_analyze_equals_the_cli_on_digits(cli, tmp_path):
    want = run_cli(cli, [DIGITS / "stacked.npz"], tmp_path / "cli", "--backend", "cpu")
    got = gradtail.analyze(digits(), backend="cpu")
    assert got.tensors == want["tensors"]
    assert got.model == want["model"]
    assert [(t["name"], t["shape"], t["samples"], t["dtype"]) for t in got.summary["inputs"]] == [
        (t["name"], t["shape"], t["samples"], t["dtype"]) for t in want["inputs"]
    ]
    assert got.summary["options"] == want["options"]


@pytest.mark.parametrize(
    "center, block, args",
    [
        ("median", 8, ["--center", "median", "--block", "8"]),
        ("none", None, ["--center", "none"]),
        (str(DIGITS / "full.npy"), None, ["--center", str(DIGITS / "full.npy")]),
    ],
)
def test_options_mean_what_the_cli_flags_mean(cli, tmp_path, center, block, args):
    want = run_cli(cli, [DIGITS / "stacked.npz"], tmp_path / "cli", "--backend", "cpu", *args)
    got = gradtail.analyze(digits(), center=center, block=block, backend="cpu")
    assert got.tensors == want["tensors"]
    assert got.model == want["model"]


def test_coords_are_the_cli_maps_shaped_like_the_tensors(cli, tmp_path):
    run_cli(cli, [DIGITS / "stacked.npz"], tmp_path / "cli", "--backend", "cpu", "--coords-dtype", "f64")
    want = read_safetensors(tmp_path / "cli" / "coords.safetensors")
    got = gradtail.analyze(digits(), backend="cpu").coords
    assert got["fc0.weight"]["alpha_block"].shape == (64, 64)
    assert sorted(f"{t}/{s}" for t in got for s in got[t]) == sorted(want)
    for t, maps in got.items():
        for s, values in maps.items():
            assert values.dtype == np.float64
            np.testing.assert_array_equal(values, want[f"{t}/{s}"], err_msg=f"{t}/{s}")


def test_save_writes_the_cli_outputs(cli, tmp_path):
    want = run_cli(cli, [DIGITS / "stacked.npz"], tmp_path / "cli", "--backend", "cpu")
    out = gradtail.analyze(digits(), backend="cpu").save(tmp_path / "py")
    got = json.loads((tmp_path / "py" / "summary.json").read_text())
    assert got["tensors"] == want["tensors"]
    assert (tmp_path / "py" / "tensors.csv").read_text() == (tmp_path / "cli" / "tensors.csv").read_text()
    assert (tmp_path / "py" / "coords.safetensors").read_bytes() == (
        tmp_path / "cli" / "coords.safetensors"
    ).read_bytes()
    assert (tmp_path / "py" / "report.html").stat().st_size > 0
    assert out == str(tmp_path / "py")


def test_float16_arrays_equal_the_cli_on_float16_files(cli, tmp_path):
    half = {k: v.astype(np.float16) for k, v in digits().items()}
    np.savez(tmp_path / "half.npz", **half)
    want = run_cli(cli, [tmp_path / "half.npz"], tmp_path / "cli", "--backend", "cpu")
    got = gradtail.analyze(half, backend="cpu")
    assert [t["dtype"] for t in got.summary["inputs"]] == ["f16"] * 4
    assert got.tensors == want["tensors"]


def test_bf16_bits_equal_the_cli_on_a_bf16_safetensors_file(cli, tmp_path):
    bits = {k: bf16_bits(v) for k, v in digits().items()}
    write_safetensors(
        tmp_path / "bf16.safetensors",
        {k: ("BF16", v.shape, v.astype("<u2").tobytes()) for k, v in bits.items()},
    )
    want = run_cli(cli, [tmp_path / "bf16.safetensors"], tmp_path / "cli", "--backend", "cpu")
    got = gradtail.analyze({k: gradtail.bf16(v) for k, v in bits.items()}, backend="cpu")
    assert [t["dtype"] for t in got.summary["inputs"]] == ["bf16"] * 4
    assert got.tensors == want["tensors"]


def test_one_array_and_any_memory_layout(cli, tmp_path):
    stack = np.load(DIGITS / "stack.npy")
    want = run_cli(cli, [DIGITS / "stack.npy"], tmp_path / "cli", "--backend", "cpu")
    for layout in [stack, np.asfortranarray(stack), stack.astype(">f4"), stack[:, ::-1][:, ::-1]]:
        got = gradtail.analyze(layout, backend="cpu")
        assert [t["name"] for t in got.tensors] == ["tensor"]
        assert [dict(t, name="stack") for t in got.tensors] == want["tensors"]


def test_float64_arrays_are_read_as_float64():
    x = np.random.default_rng(1).standard_normal((64, 10))
    r = gradtail.analyze({"w": x}, backend="cpu")
    assert r.summary["inputs"][0]["dtype"] == "f64"
    # Mean and variance of column 0 (numpy in float64; the engine sums with compensation).
    np.testing.assert_allclose(r.coords["w"]["mean"][0], x[:, 0].mean(), rtol=1e-12)
    np.testing.assert_allclose(r.coords["w"]["var"][0], x[:, 0].var(), rtol=1e-12)


def test_bad_inputs_raise_value_errors_naming_the_tensor():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"tensor w: dtype uint16 .*gradtail\.bf16"):
        gradtail.analyze({"w": np.zeros((8, 3), np.uint16)})
    with pytest.raises(ValueError, match=r"tensor w: dtype int64"):
        gradtail.analyze({"w": np.zeros((8, 3), np.int64)})
    with pytest.raises(ValueError, match=r"\[tensor w\]: only K = 3 samples"):
        gradtail.analyze({"w": rng.standard_normal((3, 5)).astype(np.float32)}, backend="cpu")
    with pytest.raises(ValueError, match=r"\[tensor b\]: has K = 9 samples"):
        gradtail.analyze(
            {"a": rng.standard_normal((8, 5)), "b": rng.standard_normal((9, 5))}, backend="cpu"
        )
    with pytest.raises(ValueError, match="0-d array"):
        gradtail.analyze({"s": np.float32(1.0)}, backend="cpu")
    with pytest.raises(ValueError, match="no arrays"):
        gradtail.analyze({})


def test_bad_options_raise():
    x = {"w": np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)}
    with pytest.raises(ValueError, match='center="middle"'):
        gradtail.analyze(x, center="middle")
    with pytest.raises(ValueError, match='backend="tpu"'):
        gradtail.analyze(x, backend="tpu")
    with pytest.raises(ValueError, match="batch_size=0"):
        gradtail.analyze(x, batch_size=0)
    with pytest.raises(OSError):
        gradtail.analyze(x, center="/nonexistent/full.npy", backend="cpu")


def test_gpu_engine_equals_the_cli_gpu_engine(cli, tmp_path):
    try:
        got = gradtail.analyze(digits(), backend="gpu")
    except RuntimeError as e:
        if os.environ.get("GRADTAIL_REQUIRE_GPU") == "1":
            raise
        pytest.skip(f"no GPU adapter: {e}")
    want = run_cli(cli, [DIGITS / "stacked.npz"], tmp_path / "cli", "--backend", "gpu")
    assert got.summary["engine"] == want["engine"]
    assert got.tensors == want["tensors"]


def test_repr_is_the_cli_table():
    r = gradtail.analyze(digits(), backend="cpu")
    assert "fc0.weight" in repr(r)
    assert not math.isnan(r.tensors[0]["alpha_time_blocked"])
