"""The cluster files: the compose file parses and every command it or the Slurm template runs exists."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hqsearch.cli import _parser
from hqsearch.config.schema import load_config

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
SBATCH = (ROOT / "docker" / "slurm" / "hqsearch.sbatch").read_text()


def compose_commands() -> list[list[str]]:
    return [svc["command"] for svc in COMPOSE["services"].values() if "command" in svc]


def test_compose_has_the_stack():
    assert {"postgres", "ray-head", "ray-worker", "dashboard", "driver"} <= set(COMPOSE["services"])
    worker = COMPOSE["services"]["ray-worker"]
    assert any(v.endswith(":/tools/Xilinx:ro") for v in worker["volumes"])  # tools mounted, not baked in
    dockerfile = ROOT / COMPOSE["services"]["driver"]["build"]["dockerfile"]
    assert dockerfile.exists()
    for src in re.findall(r"^COPY (\S+)", dockerfile.read_text(), flags=re.M):
        assert (ROOT / src).exists(), src


def interpolated(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR-default}` with these environment variables."""

    def one(m: re.Match) -> str:
        name, op, default = m[1], m[2], m[3] or ""
        given = env.get(name)
        if op == ":-":
            return given or default
        if op == "-":
            return default if given is None else given
        return given or ""

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", one, value)


def published(env: dict[str, str]) -> list[tuple[str, str]]:
    """(service, host address) of every published port, as compose reads the file with `env` set."""
    found = []
    for name, svc in COMPOSE["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):  # long syntax
                found.append((name, interpolated(str(port.get("host_ip", "")), env)))
                continue
            parts = interpolated(str(port), env).rsplit(":", 2)
            found.append((name, parts[0] if len(parts) == 3 else ""))  # "" : every address
    return found


def test_compose_publishes_the_dashboards_on_loopback_unless_told():
    ports = published({})
    assert {name for name, _ in ports} == {"ray-head", "dashboard"}  # Ray's dashboard takes job submissions
    assert all(address == "127.0.0.1" for _, address in ports), ports
    assert all(address == "0.0.0.0" for _, address in published({"HQSEARCH_PUBLISH_ADDRESS": "0.0.0.0"}))


@pytest.mark.parametrize("argv", [c for c in compose_commands() if c[0] == "hqsearch"], ids=lambda c: c[1])
def test_compose_hqsearch_commands_parse(argv):
    args = _parser().parse_args(argv[1:])
    config = getattr(args, "config", None)
    if config is not None:
        cfg = load_config(ROOT / config)
        assert cfg.study.storage_url.startswith("postgresql+psycopg2://hq:hq@postgres:")
        assert cfg.execution.executor == "ray"


def ray_start_flags() -> set[str]:
    out = subprocess.run(["ray", "start", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", out))


def test_ray_start_flags_exist():
    known = ray_start_flags()
    used = []
    for argv in compose_commands():
        if argv[:2] == ["ray", "start"]:
            used += [a.split("=")[0] for a in argv[2:] if a.startswith("--")]
    for line in SBATCH.splitlines():
        if "ray start" in line or line.strip().startswith("--"):
            used += re.findall(r"(--[a-z][a-z0-9-]+)", line.split("#")[0])
    assert used and set(used) <= known, set(used) - known


def test_sbatch_runs_a_real_hqsearch_command():
    assert SBATCH.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in SBATCH
    argv = shlex.split(re.search(r"args=\((.*)\)", SBATCH)[1])  # run "$config" --no-progress
    argv = ["studies/digits.yaml" if a == "$config" else a for a in argv]
    parsed = _parser().parse_args([*argv, "--storage", "sqlite:///x.db"])
    assert parsed.command == "run" and parsed.no_progress
    assert subprocess.run(["bash", "-n", str(ROOT / "docker" / "slurm" / "hqsearch.sbatch")]).returncode == 0
