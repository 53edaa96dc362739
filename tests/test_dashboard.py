"""`hqsearch dashboard` serves optuna-dashboard on a study's storage, artifacts included."""

import json
import subprocess
import sys
import time
import urllib.request

import yaml
from conftest import tiny_raw
from helpers import free_port


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def test_dashboard_lists_the_study_its_trials_and_artifacts(finished_study, tmp_path):
    cfg = finished_study
    raw = tiny_raw(cfg.study.run_dir, cfg.study.name, study={"n_trials": 3, "constraints": ["luts <= 1000000"]})
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hqsearch.cli", "dashboard", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = get(f"{base}/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the dashboard did not start"
                time.sleep(0.5)
        assert status == 200
        studies = json.loads(body)["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == cfg.study.name]
        assert study["directions"] == ["maximize", "minimize", "minimize"]

        _, body = get(f"{base}/api/studies/{study['study_id']}")
        detail = json.loads(body)
        assert detail["objective_names"] == ["accuracy", "luts", "latency_cycles"]  # set_metric_names
        trials = detail["trials"]
        assert len(trials) == 3
        for trial in trials:
            names = {a["filename"] for a in trial["artifacts"]}
            assert {"model.keras", "metrics.json", "training.png"} <= names

        def artifact(name: str) -> bytes:
            meta = next(a for a in trials[0]["artifacts"] if a["filename"] == name)
            status, body = get(f"{base}/artifacts/{study['study_id']}/{trials[0]['trial_id']}/{meta['artifact_id']}")
            assert status == 200
            return body

        assert "accuracy" in json.loads(artifact("metrics.json"))["metrics"]
        assert artifact("training.png").startswith(b"\x89PNG")
    finally:
        server.terminate()
        server.wait(timeout=30)
