"""The weights the app offers per mode: shipped first, then files the user loaded, each under its own task."""
import pytest

from edpn_core.model_io import WeightsError, build_model, save_weights
from edpn_gui.weights_catalogue import WeightsCatalogue


@pytest.fixture
def shipped(tmp_path, monkeypatch, tiny_overrides):
    folder = tmp_path / "shipped"
    save_weights(build_model("lite", "sr", **tiny_overrides), folder / "edpn-lite-sr.safetensors", "lite")
    monkeypatch.setenv("EDPN_WEIGHTS_DIR", str(folder))
    return folder


def test_a_loaded_file_is_offered_and_chosen_for_its_own_task(shipped, tmp_path, tiny_overrides):
    catalogue = WeightsCatalogue()
    mine = save_weights(build_model("lite", "deblock", **tiny_overrides), tmp_path / "mine.safetensors", "lite")
    assert catalogue.load(mine).task == "deblock"
    assert catalogue.offered("deblock") == [("mine.safetensors", mine)]
    assert catalogue.offered("sr") == [("lite (shipped)", shipped / "edpn-lite-sr.safetensors")]
    assert catalogue.weights_for("deblock", "cpu") == mine
    assert catalogue.weights_for("sr", "cpu") == shipped / "edpn-lite-sr.safetensors"
    catalogue.load(mine)
    assert len(catalogue.offered("deblock")) == 1  # loading twice lists it once


def test_an_unusable_file_is_refused_and_not_offered(shipped, tmp_path):
    catalogue = WeightsCatalogue()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not weights")
    with pytest.raises(WeightsError):
        catalogue.load(broken)
    assert catalogue.offered("deblock") == []
    with pytest.raises(FileNotFoundError):
        catalogue.weights_for("deblock", "cpu")
