"""The names a study stores: every user-attribute key of its trials (and the keys inside `info` and the
estimate that other modules read), with the readers of the nested parts.

Stored names are an interface: a study written by an earlier hqsearch is read by these same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# what every finished trial records (`TrialOutcome.user_attrs`)
PARAMS_ATTR = "params"  # the values it ran with (`TrialParams.to_dict`)
METRICS_ATTR = "metrics"  # every metric it measured, objective or not
SOURCES_ATTR = "sources"  # where each metric came from (estimate, Yosys, Vivado)
TIMINGS_ATTR = "timings"  # seconds per stage
INFO_ATTR = "info"  # training details, versions, tool
ERROR_ATTR = "error"  # why it failed
EXECUTOR_ATTR = "executor"  # where it ran
TRIAL_DIR_ATTR = "trial_dir"  # its working folder on the driver's node
DRIVER_ATTR = "driver"  # the driver process that owns it while it runs
HEARTBEAT_ATTR = "heartbeat"  # that driver's last sign of life
RETRY_OF_ATTR = "retry_of"  # on a training enqueued again: the lost or stopped trial it runs again

# lineage: what a point is and where it came from (`points`)
ORIGIN_ATTR = "origin"
PARENT_ATTR = "parent"
EPOCH_ATTR = "epoch"
BETA_ATTR = "beta"
SOURCE_ATTR = "source"  # an imported point's file
SHA_ATTR = "source_sha256"  # and its content, so the same file is not imported twice
MODEL_ARTIFACT_ATTR = "model_artifact"  # artifact id of the point's model (on the parent for harvested ones)
CONTINUES_ATTR = "continues"  # on a training that continued a point: that point's trial number
TOWARD_ATTR = "toward"  # on a continuation through a gap of the front: the cheaper neighbour it ramps towards
START_FAILED_ATTR = "start_failed"  # on a continuation that could not start: the point, never continued again
MEASURES_ATTR = "measures"  # on a later synthesis: the trial number of the point told with its estimate
ARTIFACTS_ATTR = "artifacts"  # on a later synthesis: its reports' artifact ids (stored with the study)

# inside `info`
CURVE_KEY = "curve"  # a training's per-epoch `val_accuracy` and `ebops`, as logged
SKIPPED_ATTR_KEY = "synth_skipped"  # why the backend did not measure the point
ESTIMATE_KEY = "estimate"  # the estimate backend's numbers for its design
FAMILY_KEY = "hls4ml"  # in such an estimate: the design's hls4ml settings, for the HLS backends

CONFIG_ATTR = "hqsearch_config"  # a study attribute: the config it runs, as stored
UNMEASURED = "unmeasured"  # constraint key: 1 on a design told with its estimate instead of a measurement


def _part(attrs: Mapping[str, Any], key: str) -> dict:
    return attrs.get(key) or {}


def params_of(attrs: Mapping[str, Any]) -> dict:
    return _part(attrs, PARAMS_ATTR)


def metrics_of(attrs: Mapping[str, Any]) -> dict:
    return _part(attrs, METRICS_ATTR)


def sources_of(attrs: Mapping[str, Any]) -> dict:
    return _part(attrs, SOURCES_ATTR)


def timings_of(attrs: Mapping[str, Any]) -> dict:
    return _part(attrs, TIMINGS_ATTR)


def info_of(attrs: Mapping[str, Any]) -> dict:
    return _part(attrs, INFO_ATTR)
