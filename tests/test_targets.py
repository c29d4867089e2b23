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


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: t.replace('neurons = { value = 1024, source = "Davies 2018: 1024 compartments per core" }',
                         "neurons = 1024"), "core.neurons: write it as { value"),
    (lambda t: t.replace('source = "Davies 2018: 1024 compartments per core"', 'source = ""'),
     "core.neurons: source must say where the number comes from"),
    (lambda t: t.replace('neurons = { value = 1024,', 'neurons = { value = 10.5,'), "core.neurons: value must be an integer"),
    (lambda t: t.replace('arithmetic = "loihi"', 'arithmetic = "analog"'), "arithmetic: 'analog' is not one of"),
    (lambda t: t.replace("[core]", "[core]\nsynapses_per_axon = { value = 1, source = \"x\" }"),
     "core: unknown keys ['synapses_per_axon']"),
    (lambda t: t.replace("hop_east_west = {", "hop_westward = {"), "costs"),
    (lambda t: t.replace("[chip]", "[chip"), "not valid TOML"),
    (lambda t: t.replace('neurons = { value = 1024,', 'neurons = { value = -4,'), "core.neurons: must not be negative"),
])
def test_bad_target_files_are_reported_with_the_key(tmp_path, edit, fragment):
    path = tmp_path / "chip.toml"
    path.write_text(edit(LOIHI))
    with pytest.raises(TargetError) as error:
        load_target(str(path))
    assert str(path) in str(error.value) and fragment in str(error.value)


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
