"""The in-run front a training keeps, and the candidates thinned from it."""

import keras
import numpy as np

from hqsearch.pipeline.harvest import Checkpoint, InRunFront, thin


def _ckpt(epoch: int, acc: float, ebops: float) -> Checkpoint:
    return Checkpoint(epoch, acc, ebops, None, [])


def test_in_run_front_keeps_non_dominated_epochs_with_their_weights():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    front = InRunFront()
    front.set_model(model)
    logs = [  # (val_accuracy, ebops) per epoch
        (0.50, 900),
        (0.70, 800),  # dominates epoch 1
        (0.65, 500),
        (0.65, 500),  # a tie adds nothing
        (0.60, 600),  # dominated by epoch 3
        (0.90, 700),
        (0.40, 100),
    ]
    weights = {}
    for epoch, (acc, ebops) in enumerate(logs):
        model.layers[0].kernel.assign(np.full((2, 1), float(epoch)))
        weights[epoch + 1] = float(epoch)
        front.on_epoch_end(epoch, {"val_accuracy": acc, "ebops": ebops, "beta": 1e-5 * epoch})
    front.on_epoch_end(len(logs), {"ebops": 50})  # no validation accuracy: not a candidate

    assert sorted(c.epoch for c in front.front) == [3, 6, 7]
    for c in front.front:  # each keeps the weights of its own epoch, copied
        assert np.all(c.weights[0] == weights[c.epoch])
        assert c.beta == 1e-5 * (c.epoch - 1)


def test_thin_spreads_candidates_along_log_ebops():
    front = [_ckpt(e, 0.5 + 0.04 * e, 10.0 ** (e / 3)) for e in range(1, 11)]  # ebops 2 .. 2,154
    picked = thin(front, 4)
    assert len(picked) == 4
    ebops = [c.ebops for c in picked]
    assert ebops == sorted(ebops)
    assert ebops[0] == min(c.ebops for c in front) and ebops[-1] == max(c.ebops for c in front)
    gaps = np.diff(np.log10(ebops))
    assert gaps.max() < 2.5 * gaps.min()  # roughly even in log EBOPs, not bunched

    assert thin(front, 0) == []
    assert len(thin(front, 50)) == 10
    assert 10 not in [c.epoch for c in thin(front, 4, exclude_epoch=10)]  # the final model is the trial itself
