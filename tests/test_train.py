"""beta schedules as HGQ2 callbacks, in real training runs."""

import keras

from hqsearch.config import DataSection, ModelSection, TrainingSection
from hqsearch.data import load_dataset
from hqsearch.model import build_model
from hqsearch.space import TrialParams
from hqsearch.train import train

PARAMS = TrialParams(beta=1e-6, l1=0, l2=0, weights="intra", activations="intra", learning_rate=5e-3, widths=(8,))


def fit(training: TrainingSection):
    keras.utils.set_random_seed(0)
    data = load_dataset(DataSection())
    model = build_model(ModelSection(), PARAMS, data.input_shape, data.n_classes)
    return train(model, data, training, PARAMS)


def test_pid_schedule_moves_beta_after_its_warmup():
    # BetaPID (HGQ2) takes over from the trial's beta after the warmup and moves it every epoch
    result = fit(TrainingSection(epochs=6, beta_schedule="pid", target_ebops=50.0, pid_warmup=1))
    assert result.epochs == 6 and result.final_beta is not None
    assert abs(result.final_beta - PARAMS.beta) / PARAMS.beta > 0.01
    held = fit(TrainingSection(epochs=3, beta_schedule="pid", target_ebops=50.0, pid_warmup=5))
    assert held.final_beta == PARAMS.beta  # still warming up: the trial's own beta


def test_constant_schedule_keeps_beta():
    result = fit(TrainingSection(epochs=2))
    assert result.final_beta is None or abs(result.final_beta - PARAMS.beta) < 1e-12
