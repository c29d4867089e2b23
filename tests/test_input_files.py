""".npy/.npz inputs: every malformed or hostile file is refused in one line naming the member,
before anything its header declares is allocated."""

import io
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from snnc import ir
from snnc.errors import SnncError
from snnc.files import MEMORY_BUDGET_VARIABLE, Budget, check_declared_array, load_arrays

from graphs import mlp, spikes


def npy(shape, descr="<f8", data=b"", version=(1, 0)):
    """An .npy file whose header declares ``shape`` and ``descr``, followed by ``data`` as it is."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue() + data


def npz(path, members, method=zipfile.ZIP_STORED):
    """An .npz of raw members (name -> bytes)."""
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def refused(path, *fragments, **kwargs):
    with pytest.raises(SnncError) as error:
        load_arrays(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


def saved(tmp_path, array, name="x.npy"):
    path = tmp_path / name
    np.save(path, array, allow_pickle=True)
    return path


def test_good_files_load_as_numpy_writes_them(tmp_path):
    arrays = {"a": np.arange(6, dtype=">i4").reshape(2, 3), "b": np.asfortranarray(np.ones((2, 3), np.float16)),
              "c": np.array([True, False]), "d": np.uint64(7) * np.ones((1, 1), np.uint64)}
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    np.savez(tmp_path / "s.npz", **arrays)
    for path in (tmp_path / "c.npz", tmp_path / "s.npz"):
        loaded = load_arrays(path)
        assert list(loaded) == list(arrays)
        for key, array in arrays.items():
            assert loaded[key].dtype == array.dtype and np.array_equal(loaded[key], array)
    x = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    assert np.array_equal(load_arrays(saved(tmp_path, x)), x)
    (tmp_path / "v2.npy").write_bytes(npy((2,), "<f8", np.ones(2).tobytes(), version=(2, 0)))
    assert load_arrays(tmp_path / "v2.npy").tolist() == [1.0, 1.0]


@pytest.mark.parametrize("content, fragment", [
    (b"", "not a readable .npy or .npz file"),
    (b"PK\x03\x04 truncated", "not a readable .npy or .npz file"),
    (b"\x93NUMPY\x01", "not a readable .npy array"),
    (npy((3,), "<f8", np.ones(3).tobytes())[:-5], "declares 24 bytes of data, the file holds 19"),
    (npy((3,), "<f8", np.ones(4).tobytes()), "declares 24 bytes of data, the file holds 32"),
    (npy((1000, 1000)), "declares 8000000 bytes of data, the file holds 0"),
    (npy((-1,), "<f8", np.ones(4).tobytes()), "shape (-1,) is not a shape"),
    (npy((10**6, 10**6)), "a float64 array of shape (1000000, 1000000) takes 7450.6 GiB"),
    (npy((0, 10**30)), "takes 0 bytes"),
    (npy((2,), "<c16", bytes(32)), "arrays of complex128 are not read"),
    (npy((2,), "<U3", bytes(24)), "arrays of <U3 are not read"),
    (npy((2,), "|S3", bytes(6)), "arrays of |S3 are not read"),
    (npy((2,), "<M8[s]", bytes(16)), "arrays of datetime64[s] are not read"),
    (npy((2,), [("a", "<f8")], bytes(16)), "are not read"),
    (npy((2,), "|V4", bytes(8)), "arrays of |V4 are not read"),
    (npy((1,), "<f8", bytes(8))[:8] + b"\x00\x00" + bytes(8), "not a readable .npy array"),
    # found by mutation: numpy retries a header ast cannot parse with tokenize, which raises its own error
    (b"\x93NUMPY\x01\x00\x1a\x00{'descr': '<f8', 'shape': (\x00\n", "not a readable .npy array"),
    (npy((2, 1), "<f8", np.array([1.0, np.nan]).tobytes()), "holds NaN or infinite values"),
    (npy((2, 1), "<f4", np.array([1.0, -np.inf], np.float32).tobytes()), "holds NaN or infinite values"),
    (npy((0, 30, 5)), "the array of shape (0, 30, 5) holds no values"),
], ids=["empty", "truncated-zip", "truncated-magic", "truncated-data", "trailing-data", "header-only", "negative",
        "huge", "huge-empty", "complex", "unicode", "bytes", "datetime", "structured", "void", "zero-header",
        "tokenize", "nan", "inf", "empty-batch"])
def test_malformed_npy_files_are_refused_in_one_line(tmp_path, content, fragment):
    (tmp_path / "x.npy").write_bytes(content)
    refused(tmp_path / "x.npy", fragment)


def test_object_and_long_double_arrays_are_refused(tmp_path):
    refused(saved(tmp_path, np.array([{"a": 1}, None], dtype=object)), "arrays of object are not read")
    if np.dtype(np.longdouble).itemsize > 8:
        refused(saved(tmp_path, np.ones(2, np.longdouble)), "are not read; give bool, integers")


def test_npz_members_are_named_in_the_error(tmp_path):
    good = npy((2,), "<f8", np.ones(2).tobytes())
    refused(npz(tmp_path / "a.npz", {"ok.npy": good, "bad.npy": npy((2,), "<c8", bytes(16))}),
            "member 'bad.npy': arrays of complex64")
    refused(npz(tmp_path / "b.npz", {"notes.txt": b"hello"}), "member 'notes.txt': an .npz holds only arrays named NAME.npy")
    refused(npz(tmp_path / "c.npz", {}), "the .npz holds no arrays")
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("x.npy", good)
        archive.writestr("x.npy", good)
    refused(tmp_path / "d.npz", "member 'x.npy': appears twice")
    refused(npz(tmp_path / "e.npz", {"x.npy": good}, zipfile.ZIP_BZIP2), "compressed by zip method 12; give stored or deflated")
    refused(npz(tmp_path / "f.npz", {"x.npy": npy((2, 0))}), "member 'x.npy': the array of shape (2, 0) holds no values")
    assert load_arrays(tmp_path / "f.npz", allow_empty=True)["x"].shape == (2, 0)


def test_a_member_whose_zip_size_disagrees_with_its_header_is_refused_before_reading(tmp_path):
    """A stored member that declares a million floats but holds none, and a zip directory that
    understates a member's size: either way the header does not match the bytes the zip holds."""
    refused(npz(tmp_path / "a.npz", {"x.npy": npy((1000, 1000))}),
            "member 'x.npy': not a readable .npy array (its header declares 8000000 bytes of data, the file holds 0)")
    data = npy((4,), "<f8", np.ones(4).tobytes())
    path = npz(tmp_path / "b.npz", {"x.npy": data})
    raw = path.read_bytes()
    size = len(data).to_bytes(4, "little")
    # The central directory's uncompressed size (offset 24 of its entry) is what ZipInfo.file_size reads.
    central = raw.rindex(b"PK\x01\x02")
    assert raw[central + 24:central + 28] == size
    path.write_bytes(raw[:central + 24] + (len(data) - 8).to_bytes(4, "little") + raw[central + 28:])
    # zipfile checks the CRC of the 152 bytes the directory admits to, already while the header is read
    refused(path, "member 'x.npy': not a readable .npy array (Bad CRC-32")


def test_a_deflated_bomb_is_refused_from_its_header_without_allocating(tmp_path, monkeypatch):
    """256 MiB of zeros deflate to a quarter of a MiB; with a budget of 64 MiB the file is refused
    before any of it is inflated or allocated."""
    path = tmp_path / "bomb.npz"
    declared = 256 << 20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(npy((declared // 8,)))
            zeros = bytes(1 << 20)
            for _ in range(declared >> 20):
                member.write(zeros)
    assert path.stat().st_size < 1 << 20
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, str(64 << 20))
    tracemalloc.start()
    try:
        refused(path, "member 'x.npy': a float64 array of shape (33554432,) takes 256.0 MiB",
                "memory budget of 64.0 MiB", MEMORY_BUDGET_VARIABLE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    # The budget is for all arrays of a file together: two members of 40 MiB do not fit 64 MiB.
    half = npy((5 << 20,), "|u1")
    with zipfile.ZipFile(tmp_path / "two.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("a.npy", "b.npy"):
            archive.writestr(name, half + b"\x01" * (5 << 20))
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, str(8 << 20))
    refused(tmp_path / "two.npz", "member 'b.npy'", "the 3.0 MiB left of snnc's memory budget of 8.0 MiB")
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, str(10 << 20))
    assert sorted(load_arrays(tmp_path / "two.npz")) == ["a", "b"]


@pytest.mark.parametrize("setting", ["lots", "0", "-5", "1.5"])
def test_a_bad_budget_setting_names_the_variable(tmp_path, monkeypatch, setting):
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, setting)
    refused(saved(tmp_path, np.ones(2)), f"{MEMORY_BUDGET_VARIABLE}={setting}: give a number of bytes >= 1")


@pytest.mark.parametrize("shape, dtype, fragment", [
    ((2.5, 3), "f4", "shape (2.5, 3) is not a shape"),
    ((True, 3), "f4", "shape (True, 3) is not a shape"),
    ((-2,), "f4", "shape (-2,) is not a shape"),
    ("3", "f4", "shape '3' is not a shape"),
    ((1,) * 33, "f4", "give at most 32 integers"),
    ((3,), "complex64", "arrays of complex64 are not read"),
    ((3,), "no such type", "'no such type' is not an array type"),
    ((10**7, 10**7), np.float64, "takes 745058.1 GiB"),
])
def test_declared_arrays_are_checked_before_anything_is_read(shape, dtype, fragment):
    with pytest.raises(SnncError) as error:
        check_declared_array(shape, dtype, "model.nir: node 'fc' field 'weight'")
    assert str(error.value).startswith("model.nir: node 'fc' field 'weight': ") and fragment in str(error.value)


def test_a_shared_budget_adds_up_the_declared_arrays(monkeypatch):
    monkeypatch.setenv(MEMORY_BUDGET_VARIABLE, "1000")
    budget = Budget()
    assert check_declared_array((10, 10), np.float64, "a", budget) == 800
    assert check_declared_array([np.int64(2), 50], np.uint8, "b", budget) == 100
    with pytest.raises(SnncError, match="c: a float32 array of shape \\(50,\\) takes 200 bytes, more than the 100 bytes left"):
        check_declared_array((50,), np.float32, "c", budget)
    assert check_declared_array((50,), np.float32, "alone") == 200  # a new budget for one array


def test_run_refuses_a_bad_input_file_in_one_line_and_writes_nothing(tmp_path):
    model = tmp_path / "mlp.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(0), sizes=(5, 4, 3))), model)
    bad = tmp_path / "x.npy"
    bad.write_bytes(npy((1, 10, 5), "<c16", bytes(16 * 50)))
    result = subprocess.run([sys.executable, "-m", "snnc", "run", model, "--input", bad, "-o", tmp_path / "y.npz"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"--input {bad}: the .npy array: arrays of complex128 are not read" in result.stderr
    assert not (tmp_path / "y.npz").exists()
    np.save(bad, spikes(np.random.default_rng(1), (1, 10, 5)))
    result = subprocess.run([sys.executable, "-m", "snnc", "run", model, "--input", bad, "-o", tmp_path / "y.npz"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
