import pytest

from hqsearch.config.schema import ModelSection
from hqsearch.pipeline.model import ModelError, build_model
from hqsearch.search.space import TrialParams


def params(weights="intra", activations="intra", **kw) -> TrialParams:
    base = dict(beta=1e-6, l1=0.0, l2=0.0, learning_rate=1e-3, widths=(8,))
    base.update(kw)
    return TrialParams(weights=weights, activations=activations, **base)


# (weights, activations) -> (kernel bits shape, input bits shape) for a Dense(64 -> 8)
EXPECTED = {
    ("intra", "intra"): ((64, 8), (1, 64)),
    ("intra", "inter"): ((64, 8), (1, 1)),
    ("inter", "intra"): ((1, 1), (1, 64)),
    ("inter", "inter"): ((1, 1), (1, 1)),
    ("per_channel", "intra"): ((1, 8), (1, 64)),
    ("per_channel", "inter"): ((1, 8), (1, 1)),
}


@pytest.mark.parametrize(("weights", "activations"), sorted(EXPECTED))
def test_heterogeneity_sets_bitwidth_tensor_shapes(weights, activations):
    model = build_model(ModelSection(), params(weights, activations), (64,), 10)
    first = model.layers[0]
    assert (tuple(first.kq.bits.shape), tuple(first.iq.bits.shape)) == EXPECTED[weights, activations]


def test_trial_settings_reach_the_layers():
    model = build_model(ModelSection(), params(beta=3e-5, l1=1e-4, init_weight_bits=5), (64,), 10)
    first = model.layers[0]
    assert float(first._beta.numpy()) == pytest.approx(3e-5)
    assert float(first.kq.bits.numpy().max()) == 5
    assert [layer.units for layer in model.layers] == [8, 10]
    assert sum(float(v) for v in model.losses) > 0  # the bitwidth L1 regulariser is live


def test_conv_needs_image_shaped_data():
    with pytest.raises(ModelError, match="image_shape"):
        build_model(ModelSection(kind="conv"), params(), (64,), 10)
    model = build_model(ModelSection(kind="conv", filters=[2]), params(), (8, 8, 1), 10)
    assert model.output_shape == (None, 10)


def test_callable_builder_runs_inside_the_trial_scopes():
    model = build_model(ModelSection(kind="callable", function="helpers:small_model"), params("inter"), (64,), 3)
    assert tuple(model.layers[0].kq.bits.shape) == (1, 1)  # the scope reached the user's own layer
