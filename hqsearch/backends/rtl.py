"""The RTL backends' shared part: alkaid writes the pipelined Verilog project they build."""

from __future__ import annotations

from pathlib import Path

from hqsearch.backends.base import Backend, Design, Project
from hqsearch.config.schema import SynthesisSection
from hqsearch.firmware.rtl import write_rtl


class RTLBackend(Backend):
    """A backend that builds alkaid's Verilog (in `<workdir>/rtl`) with its own tool."""

    def write(self, design: Design, cfg: SynthesisSection, workdir: Path) -> Project:
        return Project(write_rtl(design.comb, cfg, Path(workdir) / "rtl", fuses_adders=self.fuses_adders))
