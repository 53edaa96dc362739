"""HGQ's usage rules, checked against a study config.

The rules come from HGQ's own tips: EBOPs is a resource measure only for the latency strategy at reuse
factor 1 with io_parallel; inter-layer-only heterogeneity belongs with the resource strategy and beta = 0;
intra-layer weights suit the latency strategy. `hqsearch check` and `hqsearch run` print what applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hqsearch.backends import uses_hls4ml
from hqsearch.config.schema import FloatRange, StudyConfig, hls4ml_choices


@dataclass(frozen=True)
class Advice:
    level: Literal["warning", "tip"]
    rule: int | None  # the number of the HGQ usage rule; None for a limit of hls4ml itself
    text: str

    def __str__(self) -> str:
        origin = f"HGQ rule {self.rule}" if self.rule is not None else "hls4ml"
        return f"{self.level} ({origin}): {self.text}"


def _beta_can_be_positive(cfg: StudyConfig) -> bool:
    beta = cfg.search_space.beta
    return beta.high > 0 if isinstance(beta, FloatRange) else beta > 0


def advise(cfg: StudyConfig) -> list[Advice]:
    syn, space = cfg.synthesis, cfg.search_space
    het = space.heterogeneity
    out: list[Advice] = []
    # every value a trial can take, the search space's choices where it searches them
    choices = hls4ml_choices(cfg)
    strategies, reuses, io_types = choices["strategy"], choices["reuse_factor"], choices["io_type"]
    uses_ebops = "ebops" in cfg.study.objectives or any(c.metric == "ebops" for c in cfg.study.constraints)

    can = lambda values: "can be" if len(values) > 1 else "is"  # noqa: E731
    why = [f"strategy {can(strategies)} {s!r}" for s in strategies if s != "latency"]
    why += [f"reuse_factor {can(reuses)} {r}" for r in reuses if r != 1]
    if "io_stream" in io_types:
        why.append("io_stream adds FIFOs that EBOPs cannot see")
    if uses_ebops and why:
        out.append(
            Advice(
                "warning",
                1,
                "EBOPs is used as an objective or constraint, but it estimates LUTs only "
                "for the latency strategy, reuse_factor 1 and io_parallel; here "
                + ", ".join(why)
                + ". Treat it as a regulariser, not a resource measure.",
            )
        )

    if uses_hls4ml(syn) and "io_parallel" in io_types and "latency" in strategies:
        if cfg.model.kind == "conv":
            out.append(
                Advice(
                    "tip",
                    2,
                    "io_parallel + latency with convolutions: '#pragma HLS DATAFLOW' can blow "
                    "up resources and latency in hls4ml projects; replace it with '#pragma HLS PIPELINE'.",
                )
            )
        out.append(
            Advice(
                "tip",
                3,
                "io_parallel + latency: '#pragma HLS INLINE RECURSIVE' on the top function "
                "may cut resources by about 10% in hls4ml projects.",
            )
        )

    if uses_hls4ml(syn) and io_types == ["io_stream"] and "intra" in het.activations:
        out.append(
            Advice(
                "warning",
                None,
                "hls4ml supports per-element (intra-layer) activation bitwidths only with "
                "io_parallel; with io_stream such trials fail: use activations [inter].",
            )
        )

    if "latency" in strategies:
        if "intra" not in het.weights:
            out.append(
                Advice(
                    "tip",
                    4,
                    "with the latency strategy, intra-layer heterogeneous weights are "
                    "recommended; add 'intra' to search_space.heterogeneity.weights.",
                )
            )
        if "intra" in het.activations:
            out.append(
                Advice(
                    "tip",
                    4,
                    "intra-layer heterogeneous activations are optional with the latency "
                    "strategy and may overfit; compare against 'inter'.",
                )
            )

    inter_only = "inter" in het.weights and "inter" in het.activations
    if inter_only and "resource" not in strategies:
        out.append(
            Advice(
                "warning",
                5,
                "the search space allows inter-layer-only heterogeneity (weights and "
                f"activations 'inter') with the {' or '.join(map(repr, strategies))} strategy; inter-layer-only is "
                "recommended only for the resource strategy.",
            )
        )
    if (
        inter_only
        and _beta_can_be_positive(cfg)
        and ("resource" not in strategies or not space.zero_beta_for_inter_resource)
    ):
        out.append(
            Advice(
                "warning",
                5,
                "inter-layer-only trials can get beta > 0; the training-time EBOPs is "
                "not relevant for inter-layer designs: use L1/L2 only (beta = 0).",
            )
        )
    if strategies == ["resource"] and (set(het.weights) | set(het.activations)) - {"inter"}:
        out.append(
            Advice(
                "tip",
                5,
                "the resource strategy is best served by inter-layer heterogeneity only; "
                "the search space also allows intra-layer or per-channel modes.",
            )
        )
    return out
