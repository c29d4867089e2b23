"""Target descriptions: every bundled file loads, every number has a source, bad files are named."""

import subprocess
import sys

import numpy as np
import pytest

from snnc import ir
from snnc.targets import TargetError, available_targets, load_target

from graphs import mlp, spikes

LOIHI = (load_target("loihi").path).read_text()


def test_bundled_targets_load_with_a_source_for_every_number():
    assert set(available_targets()) >= {"sim", "loihi", "loihi2", "spinnaker"}
    for name in available_targets():
        target = load_target(name)
        assert target.name == name
        if target.has_hardware:
            assert len(target.sources) >= len(target.core) + len(target.chip) + len(target.costs)
            assert all(source.strip() for source in target.sources.values())
    loihi2 = load_target("loihi2")
    assert loihi2.formats["max_delay"] == 63 and loihi2.formats["v_bits"] == 24
    assert loihi2.cores_per_chip == 128 and loihi2.core["neurons"] == 8192
    assert load_target("spinnaker").core["neurons"] == 256 and load_target("spinnaker").chips == 48
    assert load_target("loihi").costs["synaptic_op"].energy_j == pytest.approx(35.5e-12)


def set_value(text: str, key: str, value: str, field: str = "value") -> str:
    """``text`` with the ``field`` of ``key``'s entry (the first one) set to ``value``, as TOML."""
    start = text.index(f"\n{key} = {{") + 1
    start = text.index(f"{field} = ", start) + len(f"{field} = ")
    return text[:start] + value + text[text.index(",", start):]


SPINNAKER = load_target("spinnaker").path.read_text()


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: t.replace('neurons = { value = 1024, source = "Davies 2018: 1024 compartments per core" }',
                         "neurons = 1024"), "[core] neurons: write it as { value"),
    (lambda t: t.replace('source = "Davies 2018: 1024 compartments per core"', 'source = ""'),
     "[core] neurons: source must say where the number comes from"),
    (lambda t: t.replace('source = "Davies 2018: 1024 compartments per core"', 'source = "a\\u001b[2Jb"'),
     "[core] neurons: source must say where the number comes from, in printable text"),
    (lambda t: set_value(t, "neurons", "10.5"), "[core] neurons = 10.5: give an integer from 1 to 1048576"),
    (lambda t: t.replace('arithmetic = "loihi"', 'arithmetic = "analog"'), "arithmetic = 'analog': give one of"),
    (lambda t: t.replace("[core]", "[core]\nsynapses_per_axon = { value = 1, source = \"x\" }"),
     "[core]: unknown keys 'synapses_per_axon'"),
    (lambda t: t.replace("hop_east_west = {", "hop_westward = {"), "[costs]: unknown keys 'hop_westward'"),
    (lambda t: t.replace("[chip]", "[chip"), "not valid TOML (Expected ']'"),
    (lambda t: set_value(t, "neurons", "-4"), "[core] neurons = -4: give an integer from 1 to 1048576"),
    # every kind of bad number, and the brief's own example
    (lambda t: set_value(t, "mesh_width", "0"), "[chip] mesh_width = 0: give an integer from 1 to 256"),
    (lambda t: set_value(t, "mesh_width", "1_000_000_000_000"), "[chip] mesh_width = 1000000000000: give an integer"),
    (lambda t: set_value(t, "mesh_width", "nan"), "[chip] mesh_width = nan: give an integer from 1 to 256"),
    (lambda t: set_value(t, "mesh_width", "4.0"), "[chip] mesh_width = 4.0: give an integer from 1 to 256"),
    (lambda t: set_value(t, "mesh_width", "true"), "[chip] mesh_width = True: give an integer from 1 to 256"),
    (lambda t: set_value(t, "mesh_width", '"8"'), "[chip] mesh_width = '8': give an integer from 1 to 256"),
    (lambda t: set_value(t, "cores_per_tile", "0"), "[chip] cores_per_tile = 0: give an integer from 1 to 1024"),
    (lambda t: set_value(set_value(set_value(t, "board_width", "256"), "board_height", "256"), "mesh_width", "64"),
     "[chip]: 67108864 cores in all (cores_per_tile x mesh x board); give at most 2097152"),
    (lambda t: set_value(t, "neurons", str(2**21)), "[core] neurons = 2097152: give an integer from 1 to 1048576"),
    (lambda t: set_value(t, "synaptic_memory_bits", "0"), "[core] synaptic_memory_bits = 0: give an integer"),
    (lambda t: set_value(t, "synapse_bits", "65"), "[core] synapse_bits = 65: give an integer from 1 to 64"),
    (lambda t: set_value(t, "fan_in_axons", "-1"), "[core] fan_in_axons = -1: give an integer from 1 to 16777216"),
    (lambda t: set_value(t, "v_bits", "30"), "[formats] v_bits = 30: give 24 (the loihi arithmetic is Lava's"),
    (lambda t: set_value(t, "decay_bits", "8"), "[formats] decay_bits = 8: give 12"),
    (lambda t: set_value(t, "weight_bits", "16"), "[formats] weight_bits = 16: give an integer from 1 to 8 (Lava's"),
    (lambda t: set_value(t, "weight_exponent_min", "-100"), "[formats] weight_exponent_min = -100: give an integer from -8"),
    (lambda t: set_value(t, "max_delay", "64"), "[formats] max_delay = 64: give an integer from 0 to 63"),
    (lambda t: set_value(t, "synaptic_op", "inf", "energy_j"),
     "[costs] synaptic_op.energy_j = inf: give a number from 0 to 1.0 (joules per event)"),
    (lambda t: set_value(t, "synaptic_op", "-1e-12", "energy_j"), "[costs] synaptic_op.energy_j = -1e-12: give a number"),
    (lambda t: set_value(t, "spike_out", "nan", "time_s"), "[costs] spike_out.time_s = nan: give a number from 0 to 1.0"),
    (lambda t: set_value(t, "static_power_w", "1e9"), "[costs] static_power_w = 1000000000.0: give a number from 0 to 1000.0"),
    (lambda t: set_value(t, "barrier_base_s", "2"), "[costs] barrier_base_s = 2: give a number from 0 to 1.0 (seconds)"),
    (lambda t: t.replace('name = "loihi"', 'name = "x\\"\\"\\"; import os"'), "name = 'x\"\"\"; import os': give a name"),
    (lambda t: t.replace('name = "loihi"', 'name = ""'), "name = '': give a name of 1 to 64 letters"),
    (lambda t: t.replace('name = "loihi"', "name = 3"), "name = 3: give a name"),
    (lambda t: t.replace('description = "Intel', 'description = "line\\nbreak'), "description = 'line\\nbreak"),
    (lambda t: t.replace('pipeline = [', 'pipeline = "canonicalize" #['), "pipeline = 'canonicalize': give a list"),
    (lambda t: t.replace('pipeline = ["canonicalize"', 'pipeline = ["import os"'), "pipeline = ['import os',"),
    (lambda t: "mesh = 3\n" + t, "top level: unknown keys 'mesh'"),
    (lambda t: t.replace("[chip]", "[chipp]\n[chip]"), "top level: unknown keys 'chipp'"),
    (lambda t: t + "x = " + "[" * 100000 + "]" * 100000, "not valid TOML (nests deeper than Python can read)"),
    (lambda t: t + "#" + "x" * (1 << 20), "bytes is not a target file; one is at most 1048576 bytes"),
], ids=lambda value: None if callable(value) else value[:50])
def test_bad_target_files_are_reported_with_the_key(tmp_path, edit, fragment):
    path = tmp_path / "chip.toml"
    path.write_text(edit(LOIHI))
    with pytest.raises(TargetError) as error:
        load_target(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message, message


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: set_value(t, "max_delay", "12"), "[formats] max_delay = 12: give a power of two from 1 to 256"),
    (lambda t: set_value(t, "max_delay", "0"), "[formats] max_delay = 0: give a power of two"),
    (lambda t: set_value(t, "delay_extension_stages", "0"), "[formats] delay_extension_stages = 0: give an integer"),
    (lambda t: set_value(t, "state_fraction_bits", "16"), "[formats] state_fraction_bits = 16: give 15 (the spinnaker"),
    (lambda t: set_value(t, "router_entries", "0"), "[chip] router_entries = 0: give an integer from 1 to 1048576"),
], ids=lambda value: None if callable(value) else value[:50])
def test_bad_spinnaker_formats_are_reported_with_the_key(tmp_path, edit, fragment):
    path = tmp_path / "spinn.toml"
    path.write_text(edit(SPINNAKER))
    with pytest.raises(TargetError) as error:
        load_target(str(path))
    assert str(error.value).startswith(f"{path}: ") and fragment in str(error.value), str(error.value)


def test_a_target_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_bytes(LOIHI.encode() + b"# \xff\xfe")
    with pytest.raises(TargetError, match="not valid TOML \\(not UTF-8 text at byte"):
        load_target(str(path))


def test_compile_refuses_a_bad_target_in_one_line_and_writes_nothing(tmp_path):
    """A mesh of a trillion tiles made placement loop for ever; now the file is refused."""
    path = tmp_path / "chip.toml"
    path.write_text(set_value(LOIHI, "mesh_width", str(10**12)))
    model = tmp_path / "mlp.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(0), sizes=(5, 4, 3))), model)
    result = subprocess.run([sys.executable, "-m", "snnc", "compile", model, "--target", path, "-o", tmp_path / "art"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{path}: [chip] mesh_width = 1000000000000: give an integer from 1 to 256" in result.stderr
    assert not (tmp_path / "art").exists()


def test_unknown_target_lists_the_available_ones():
    with pytest.raises(TargetError, match="--target truenorth: unknown target; available: loihi, loihi2"):
        load_target("truenorth")
    with pytest.raises(TargetError, match="no such target file"):
        load_target("missing.toml")


def test_a_user_adds_a_target_by_writing_one_file(tmp_path):
    """A half-size Loihi written by a user compiles and costs through the command line."""
    path = tmp_path / "small_loihi.toml"
    path.write_text(LOIHI.replace('name = "loihi"', 'name = "small_loihi"')
                    .replace('neurons = { value = 1024,', 'neurons = { value = 8,'))
    model = tmp_path / "mlp.snnir"
    ir.save(ir.verify(mlp(np.random.default_rng(0), sizes=(5, 12, 3))), model)
    np.save(tmp_path / "x.npy", spikes(np.random.default_rng(1), (1, 30, 5)))

    def snnc(*args):
        return subprocess.run([sys.executable, "-m", "snnc", *map(str, args)], capture_output=True, text=True)

    assert snnc("compile", model, "--target", path, "-o", tmp_path / "art").returncode == 0
    result = snnc("run", tmp_path / "art", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert result.returncode == 0, result.stderr
    # 12 + 3 neurons on cores of 8: the mapping packs them into the lower bound of 2 cores
    assert "small_loihi" in result.stdout and "cores                    2" in result.stdout
