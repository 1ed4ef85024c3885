"""``equiseg pipeline submit`` / ``schedule`` against a loopback HTTP server speaking the KFP v2beta1 REST API.

No Kubeflow runs here; the server records what the real ``kfp.Client`` sends, so the test checks the wire: the
namespace, experiment, parameters, service account and caching each flag puts into the request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from equiseg.cli import cli
from pipelines.cluster import compile_pipeline, parse_params


class KfpApi:
    """Answers the calls kfp.Client makes to create experiments, runs and recurring runs; records every body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                api.requests.append(("GET", self.path, {}))
                if self.path.startswith("/apis/v2beta1/experiments"):
                    self._answer({"experiments": [{"experiment_id": "exp-1", "display_name": "x"}], "total_size": 1})
                else:
                    self._answer({})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                api.requests.append(("POST", self.path, body))
                if self.path.startswith("/apis/v2beta1/experiments"):
                    self._answer({"experiment_id": "exp-1", "display_name": body.get("display_name", "")})
                elif self.path.startswith("/apis/v2beta1/recurringruns"):
                    self._answer({"recurring_run_id": "job-1", "display_name": body.get("display_name", "")})
                elif self.path.startswith("/apis/v2beta1/runs"):
                    self._answer({"run_id": "run-1", "display_name": body.get("display_name", "")})
                else:
                    self._answer({})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posted(self, prefix: str) -> dict[str, Any]:
        """The last body POSTed to a path starting with ``prefix``."""
        return [body for method, path, body in self.requests if method == "POST" and path.startswith(prefix)][-1]


@pytest.fixture
def kfp_api() -> Iterator[KfpApi]:
    api = KfpApi()
    yield api
    api.server.shutdown()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("p") / "retrain.yaml", target="cluster", profile="cluster")


FLAGS = [
    *("--namespace", "team-a", "--experiment", "nightly", "--service-account", "equiseg-runner"),
    *("--param", "profile=cluster", "--param", 'overrides=["train.epochs=3"]', "--param", "trials_per_worker=2"),
]


def test_submit_sends_namespace_experiment_params_service_account_and_caching(kfp_api: KfpApi, package: Path) -> None:
    args = ["pipeline", "submit", "--host", kfp_api.url, "--package", str(package), *FLAGS, "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"kfp_run_id": "run-1"}  # kfp's UI links go to stderr
    run = kfp_api.posted("/apis/v2beta1/runs")
    assert run["service_account"] == "equiseg-runner"
    assert run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {
        "profile": "cluster",
        "overrides": ["train.epochs=3"],
        "trials_per_worker": 2,
    }
    compiled = run["pipeline_spec"]["pipeline_spec"]["root"]["dag"][
        "tasks"
    ]  # --cache keeps the compiled per-step options
    assert "run-summary" in compiled
    assert any("namespace=team-a" in path for _, path, _ in kfp_api.requests)


def test_no_cache_turns_caching_off_for_every_step(kfp_api: KfpApi, package: Path) -> None:
    args = ["pipeline", "submit", "--host", kfp_api.url, "--package", str(package), "--no-cache"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    spec = kfp_api.posted("/apis/v2beta1/runs")["pipeline_spec"]["pipeline_spec"]
    options = [
        t.get("cachingOptions", {})
        for c in [spec["root"], *spec["components"].values()]
        for t in c.get("dag", {}).get("tasks", {}).values()
    ]
    assert options and not any(o.get("enableCache") for o in options)


def test_schedule_sends_the_same_flags_to_a_recurring_run(kfp_api: KfpApi, package: Path) -> None:
    args = ["pipeline", "schedule", "--host", kfp_api.url, "--package", str(package), *FLAGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    job = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert job["service_account"] == "equiseg-runner"
    assert job["runtime_config"]["parameters"]["overrides"] == ["train.epochs=3"]
    assert job["max_concurrency"] in ("1", 1) and job["no_catchup"] is True
    assert any(p.startswith("/apis/v2beta1/experiments") and "namespace=team-a" in p for _, p, _ in kfp_api.requests)


def test_a_param_without_equals_is_one_line_with_the_fix(package: Path) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["profile"])
    result = CliRunner().invoke(
        cli, ["pipeline", "submit", "--host", "http://127.0.0.1:9", "--package", str(package), "--param", "oops"]
    )
    assert result.exit_code != 0 and "KEY=VALUE" in result.output
