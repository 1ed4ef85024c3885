"""The Docker side: `make images` (pipelines.containers) and `equiseg pipeline run --runner docker`.

Fast tests: the one-line errors when no engine answers, against a real socket path that nothing listens on.
Slow tests (after `make images`, which `make test-slow` runs first): the builds (cached), the errors for a failed
build, an image without the project and an image of other sources, and the whole pipeline in containers against
the MLflow image on a fresh PostgreSQL database, promoting a champion.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from equiseg.cli.main import cli as equiseg_cli
from equiseg.config import PipelineConfig
from pipelines import containers
from pipelines.local import run_local

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder, as a new user would."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``DOCKER_HOST`` pointing at a socket path where nothing listens."""
    host = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


def _one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message


# ---------------------------------------------------------------------------------------------------------------------
# Fast: no engine
# ---------------------------------------------------------------------------------------------------------------------


def test_no_engine_is_a_one_line_error_naming_make_images(no_engine: str) -> None:
    with pytest.raises(containers.DockerError) as caught:
        containers.docker_client()
    message = _one_line(str(caught.value))
    assert no_engine in message and "make images" in message


def test_make_images_does_not_start_an_engine_for_someone_elses_docker_host(no_engine: str) -> None:
    with pytest.raises(containers.DockerError, match="unset DOCKER_HOST") as caught:
        containers.ensure_engine()
    _one_line(str(caught.value))


def test_docker_run_without_an_engine_fails_before_writing_anything(
    no_engine: str, workdir: Path, tiny_pipeline_overrides: list[str]
) -> None:
    with pytest.raises(containers.DockerError, match="make images"):
        run_local("smoke", tiny_pipeline_overrides, pipeline_run_id="nothing", runner="docker")
    assert not (workdir / "runs" / "nothing").exists()
    result = CliRunner().invoke(equiseg_cli, ["pipeline", "run", "--runner", "docker", "--pipeline-run-id", "cli"])
    assert result.exit_code == 1
    assert _one_line(result.output).startswith("Error: no Docker engine answers at")
    assert not (workdir / "runs" / "cli").exists()


def test_containers_module_exits_1_with_one_line_without_an_engine(no_engine: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.containers", "mlflow-server", "--port", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 1
    assert _one_line(done.stderr).startswith("error: no Docker engine answers at")


def test_image_tags_are_the_ones_pipelines_and_manifests_use() -> None:
    manifest = yaml.safe_load((REPO / "infra" / "k8s" / "base" / "mlflow.yaml").read_text().split("\n---\n")[0])
    images = [c["image"] for c in manifest["spec"]["template"]["spec"]["containers"]]
    assert containers.MLFLOW_IMAGE in images
    assert PipelineConfig().image.startswith("ghcr.io/equiseg/equiseg:")


def test_source_digest_follows_the_sources_the_images_copy(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in containers.SOURCE_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            copy.mkdir(exist_ok=True)
            shutil.copy2(source, copy / name)
    digest = containers.source_digest(copy)
    assert digest == containers.source_digest(REPO)
    (copy / "equiseg" / "__pycache__").mkdir(exist_ok=True)
    (copy / "equiseg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"ignored")
    (copy / "tests").mkdir()  # not in the images
    assert containers.source_digest(copy) == digest
    with (copy / "equiseg" / "__init__.py").open("a") as handle:
        handle.write("\n")
    assert containers.source_digest(copy) != digest


# ---------------------------------------------------------------------------------------------------------------------
# Slow: builds and runs
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    """The engine `make images` uses, with the images built (cached builds take a minute or so)."""
    containers.build_images(log_dir=REPO / "runs" / "images")
    client = containers.docker_client()
    yield client
    client.close()


@pytest.mark.slow
def test_images_hold_the_project_and_the_gpu_image_has_cuda_torch(docker_client: Any) -> None:
    cfg = PipelineConfig()
    for image in (cfg.image, cfg.gpu_image):
        containers.check_project_image(docker_client, image)
    code = "import torch, equiseg; assert torch.version.cuda; print(equiseg.__file__)"
    output = docker_client.containers.run(cfg.gpu_image, entrypoint=["python", "-c", code], remove=True)
    assert output.decode().strip().startswith("/opt/venv/")
    whoami = docker_client.containers.run(cfg.image, entrypoint=["id", "-u"], remove=True)
    assert whoami.decode().strip() == str(containers.IMAGE_UID)


@pytest.mark.slow
def test_failed_build_image_without_project_and_stale_image_are_one_line_errors(
    docker_client: Any, tmp_path: Path
) -> None:
    with pytest.raises(containers.DockerError, match="make images") as caught:
        containers.build_images(images=["mlflow"], base="equiseg-missing-base:none", log_dir=tmp_path)
    assert "failed" in _one_line(str(caught.value)) and str(tmp_path) in str(caught.value)
    with pytest.raises(containers.DockerError, match="does not hold the equiseg project") as caught:
        containers.check_project_image(docker_client, containers.MLFLOW_IMAGE)
    _one_line(str(caught.value))
    stale = tmp_path / "repo"
    shutil.copytree(REPO / "configs", stale / "configs")
    with pytest.raises(containers.DockerError, match="other sources") as caught:
        containers.check_project_image(docker_client, PipelineConfig().image, repo=stale)
    _one_line(str(caught.value))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.postgres
def test_docker_pipeline_run_promotes_a_champion_and_leaves_the_run_folder_to_the_launcher(
    docker_client: Any,
    workdir: Path,
    tiny_pipeline_overrides: list[str],
    new_postgres_database: Callable[[], str],
) -> None:
    from mlflow import MlflowClient

    database = new_postgres_database()
    optuna = containers.sibling_database(database, "_optuna")
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("equiseg")), "pipeline", "run", "--runner", "docker", "--profile", "smoke",
        "--postgres", database, "--mlflow-port", str(port), "--pipeline-run-id", "in-docker", "--json",
        *[arg for item in tiny_pipeline_overrides for arg in ("--set", item)],
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=3000, check=False)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        summary = json.loads(done.stdout)  # with --json, stdout is the summary alone (kfp's task logs go to stderr)
        _assert_run(summary, workdir / "runs" / "in-docker", MlflowClient(f"http://127.0.0.1:{port}"))
        _assert_only_the_launcher_wrote_the_run_folder(workdir, workdir / "runs" / "in-docker")
    finally:
        containers.stop_mlflow_server(docker_client, f"equiseg-mlflow-{port}")
        _drop_database(optuna)


def _assert_run(summary: dict[str, Any], run_dir: Path, client: Any) -> None:
    """What tests/pipelines/test_local_pipeline.py checks of a subprocess run, on the MLflow server."""
    assert summary["state"] == "SUCCEEDED", summary
    for key in ("data_report", "robustness_report", "gate_verdict", "model_card", "index"):
        assert Path(summary["reports"][key]).is_file(), key
        assert Path(summary["reports"][key]).is_relative_to(run_dir), key
    version_id = summary["dataset_version"]
    assert len(version_id.removesuffix(".dir")) == 32
    champion = client.get_model_version_by_alias("equiseg", "champion")
    assert champion.tags["equiseg.lineage.dataset_version"] == version_id
    assert champion.tags["equiseg.lineage.pipeline_run_id"] == "in-docker"
    assert champion.tags["equiseg.lineage.git_commit"] not in ("", "unknown")
    train_run = client.get_run(summary["mlflow_run_id"])
    assert train_run.data.tags["equiseg.dataset_version"] == version_id
    assert "robustness.emm_avg" in train_run.data.metrics
    assert champion.tags["equiseg.lineage.config_hash"] == train_run.data.tags["equiseg.config_hash"]
    # Proxied artifacts: the model and the data report live behind the server, not in a shared folder.
    assert {f.path for f in client.list_artifacts(train_run.info.run_id, "data")} >= {"data/report.html"}
    assert {"prepare_data", "validate_data", "train", "evaluate_robustness", "gate"} <= set(summary["steps"])
    assert "SUCCEEDED" in (run_dir / "summary.md").read_text()
    # The same run folder as a subprocess run, assembled by the launcher from the task outputs.
    assert {p.name for p in run_dir.iterdir()} == {
        *("data", "tune", "train", "robustness", "gate", "registry"),
        *("index.html", "facts.json", "summary.json", "summary.md"),
    }
    gate = json.loads((run_dir / "gate" / "gate.json").read_text())
    assert gate["passed"] is True and gate["first_run"] is True


def _assert_only_the_launcher_wrote_the_run_folder(workdir: Path, run_dir: Path) -> None:
    """Tasks write only their KFP outputs (the pipeline root) and the data volume; the rest is the launcher's."""
    me = os.getuid()
    pipeline_root, volume = workdir / "runs" / ".kfp" / run_dir.name, workdir / "runs" / ".docker"
    for path in workdir.rglob("*"):
        if path.is_relative_to(pipeline_root) or path.is_relative_to(volume):
            continue
        assert path.stat().st_uid == me, f"{path} was written by uid {path.stat().st_uid}, not the launcher"
    if me == 0:  # the tasks ran as the images' user, so their files are told apart by owner
        written = {p.stat().st_uid for p in pipeline_root.rglob("*")}
        assert containers.IMAGE_UID in written


def _drop_database(url: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    admin.close()
