"""HGQ2 model builders, and the mapping from a trial's heterogeneity choice to quantizer configs.

Heterogeneity is decided by which axes share one bitwidth. HGQ2 takes exactly one of
`homogeneous_axis` (axes that share) or `heterogeneous_axis` (axes that differ):

| mode        | weights (kbi)              | activations (kif)          |
|-------------|----------------------------|----------------------------|
| intra       | homogeneous_axis=()        | homogeneous_axis=(0,)      |
| inter       | heterogeneous_axis=()      | heterogeneous_axis=()      |
| per_channel | heterogeneous_axis=(-1,)   | -                          |
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import keras

from hqsearch.config.schema import ModelSection
from hqsearch.exceptions import ModelError
from hqsearch.firmware.emulate import quantized_layers
from hqsearch.search.space import TrialParams

WEIGHT_AXES: dict[str, dict[str, tuple[int, ...]]] = {
    "intra": {"homogeneous_axis": ()},
    "inter": {"heterogeneous_axis": ()},
    "per_channel": {"heterogeneous_axis": (-1,)},
}
ACTIVATION_AXES: dict[str, dict[str, tuple[int, ...]]] = {
    "intra": {"homogeneous_axis": (0,)},
    "inter": {"heterogeneous_axis": ()},
}


def _bit_regularizer(params: TrialParams) -> keras.regularizers.Regularizer:
    """Also at L1 = L2 = 0: training lifts it into the loss (`penalty`), where a zero is an input like any
    other value, so such a trial shares its compiled step with the rest."""
    return keras.regularizers.L1L2(l1=params.l1, l2=params.l2)


@contextmanager
def quantizer_scopes(params: TrialParams) -> Iterator[None]:
    """HGQ2 config scopes for one trial: every Q-layer built inside takes the trial's settings."""
    from hgq.config import LayerConfigScope, QuantizerConfigScope

    reg = _bit_regularizer(params)
    weight_kw: dict = dict(WEIGHT_AXES[params.weights], br=reg)
    act_kw: dict = dict(ACTIVATION_AXES[params.activations], fr=reg, ir=reg)
    if params.init_weight_bits is not None:
        weight_kw["b0"] = params.init_weight_bits
    if params.init_act_bits is not None:
        act_kw["f0"] = params.init_act_bits
    with ExitStack() as stack:
        stack.enter_context(QuantizerConfigScope(place=("weight", "bias"), q_type="kbi", **weight_kw))
        stack.enter_context(QuantizerConfigScope(place="datalane", q_type="kif", **act_kw))
        stack.enter_context(LayerConfigScope(beta0=params.beta, enable_ebops=True))
        yield


def _mlp(cfg: ModelSection, params: TrialParams, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    from hgq.layers import QDense

    if len(input_shape) != 1:
        raise ModelError(f"'mlp' needs flat features, the data has shape {list(input_shape)}", "model.kind")
    layers: list = [keras.Input(input_shape)]
    layers += [QDense(w, activation=cfg.activation) for w in params.widths]
    layers.append(QDense(n_classes))
    return keras.Sequential(layers, name="mlp")


def _conv(cfg: ModelSection, params: TrialParams, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    from hgq.layers import QConv2D, QDense, QMaxPool2D

    if len(input_shape) != 3:
        raise ModelError(
            f"model kind 'conv' needs image-shaped data (height, width, channels), got {list(input_shape)}; "
            "set it, e.g. [8, 8, 1] for digits",
            "data.image_shape",
        )
    layers: list = [keras.Input(input_shape)]
    for f in cfg.filters:
        layers.append(QConv2D(f, cfg.kernel_size, activation=cfg.activation, padding="same"))
        if cfg.pool_size > 1:
            layers.append(QMaxPool2D(cfg.pool_size))
    layers.append(keras.layers.Flatten())
    layers += [QDense(w, activation=cfg.activation) for w in params.widths]
    layers.append(QDense(n_classes))
    return keras.Sequential(layers, name="conv")


def _callable(cfg: ModelSection, params: TrialParams, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    assert cfg.function is not None
    module_name, _, attr = cfg.function.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"{cfg.function!r} cannot be imported: {err}", "model.function") from None
    model = fn(input_shape=input_shape, n_classes=n_classes, params=params)
    if not isinstance(model, keras.Model):
        raise ModelError(f"{cfg.function!r} must return a keras.Model, got {type(model).__name__}", "model.function")
    return model


_BUILDERS = {"mlp": _mlp, "conv": _conv, "callable": _callable}


def build_model(cfg: ModelSection, params: TrialParams, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """The trial's HGQ2 model, outputs are logits. A `callable` builder runs inside the trial's scopes."""
    key = "model.function" if cfg.kind == "callable" else "model.kind"
    with quantizer_scopes(params):
        try:
            model = _BUILDERS[cfg.kind](cfg, params, input_shape, n_classes)
        except ModelError:
            raise
        except Exception as err:  # Keras says why a layer does not fit the data; pass it on, keyed
            raise ModelError(f"cannot build the model for inputs of shape {list(input_shape)}: {err}", key) from None
    if not quantized_layers(model):
        raise ModelError("the model has no HGQ2 quantized layers (hgq.layers.Q*), so it has no firmware", key)
    return model
