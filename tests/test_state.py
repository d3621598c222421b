"""The training state seam (fastmlp._state): one object that checkpoints, persistence, warm
starts and the CLI read and write without knowing which optimizer made it."""

import json
import zipfile

import numpy as np
import pytest
from conftest import assert_same_weights, make_labels, weights

import fastmlp
from fastmlp import FastMLP
from fastmlp._state import OptimizerState, TrainingState
from fastmlp.exceptions import NotFittedError


pytestmark = pytest.mark.filterwarnings("ignore::fastmlp.exceptions.ConvergenceWarning")


def fitted(**params) -> FastMLP:
    X, y = make_labels("multiclass", 60, seed=5)
    settings = dict(hidden_layer_sizes=(4,), max_iter=3, tol=0, n_iter_no_change=100,
                    random_state=0, momentum=0.9, batch_size=8)
    return FastMLP(**{**settings, **params}).fit(X, y)


def test_state_holds_the_model_arrays_themselves():
    model = fitted()
    state = model.get_training_state()
    assert isinstance(state, TrainingState) and isinstance(state.optimizer, OptimizerState)
    assert state.optimizer.name == "sgd" and set(state.optimizer.buffers) == {"velocity"}
    state.params[0] += 1.0      # a view: coefs_ see it
    assert model.coefs_[0].flat[0] == state.params[0]
    assert state.target_kind == "multiclass"


def test_optimizer_counts_its_steps():
    # 60 rows in batches of 8: 8 steps an epoch, 3 epochs.
    assert fitted().get_training_state().optimizer.steps == 3 * 8
    assert fitted(batch_size=1).get_training_state().optimizer.steps == 3 * 60


def test_refit_without_warm_start_resets_the_optimizer():
    model = fitted()
    X, y = make_labels("multiclass", 60, seed=5)
    model.fit(X, y)
    assert model.get_training_state().optimizer.steps == 3 * 8


def test_state_is_refused_before_fit():
    with pytest.raises(NotFittedError):
        FastMLP().get_training_state()


def test_a_state_moved_to_another_estimator_continues_identically():
    X, y = make_labels("multiclass", 60, seed=5)
    model = fitted()
    twin = FastMLP(**model.get_params())
    twin.classes_, twin.n_features_in_ = model.classes_, model.n_features_in_
    for name in ("loss_curve_", "n_iter_", "t_", "best_loss_", "validation_scores_",
                 "best_validation_score_"):
        setattr(twin, name, getattr(model, name))
    state = model.get_training_state()
    twin.set_training_state(TrainingState(
        state.params.copy(), state.layout, state.optimizer.copy(),
        np.random.Generator(type(state.rng.bit_generator)()), state.target_kind,
        state.no_improvement_count))
    twin.get_training_state().rng.bit_generator.state = state.rng.bit_generator.state
    for estimator in (model, twin):
        estimator.set_params(warm_start=True).fit(X, y)
    assert_same_weights(weights(twin), weights(model))
    np.testing.assert_array_equal(twin.get_training_state().optimizer.buffers["velocity"],
                                  model.get_training_state().optimizer.buffers["velocity"])


def test_optimizer_state_survives_a_model_file(tmp_path):
    model = fitted()
    model.save(tmp_path / "model.npz")
    loaded = fastmlp.load(tmp_path / "model.npz").get_training_state().optimizer
    original = model.get_training_state().optimizer
    assert loaded.name == original.name and loaded.steps == original.steps
    np.testing.assert_array_equal(loaded.buffers["velocity"], original.buffers["velocity"])


def test_model_files_from_before_optimizer_names_load_as_sgd(tmp_path):
    """Files written before the optimizer's name, its step count and the checksum were stored
    hold SGD's velocity: they load, with the step count starting from zero."""
    model = fitted()
    model.save(tmp_path / "new.npz")
    with zipfile.ZipFile(tmp_path / "new.npz") as new, \
            zipfile.ZipFile(tmp_path / "old.npz", "w") as old:
        for entry in new.namelist():
            data = new.read(entry)
            if entry == "metadata.json":
                metadata = json.loads(data)
                del metadata["fitted"]["optimizer"], metadata["fitted"]["optimizer_steps"]
                metadata.pop("sha256", None)    # nor a checksum, in those days
                data = json.dumps(metadata).encode()
            old.writestr(entry, data)
    loaded = fastmlp.load(tmp_path / "old.npz")
    optimizer = loaded.get_training_state().optimizer
    assert optimizer.name == "sgd" and optimizer.steps == 0
    np.testing.assert_array_equal(optimizer.buffers["velocity"],
                                  model.get_training_state().optimizer.buffers["velocity"])
    X, _ = make_labels("multiclass", 60, seed=6)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
