"""The Docker side of the project: the engine, the three images (`make images`) and the MLflow server container.

``python -m pipelines.containers images`` (what `make images` runs) makes sure an engine answers (installs Debian's
``docker.io`` and starts ``dockerd`` on a private socket when none does), builds a local Debian base with
``debootstrap`` when no registry serves the public base, and builds the CPU, GPU and MLflow images from
``infra/docker/`` with BuildKit. Tags equal ``PipelineConfig.image`` / ``gpu_image`` and the MLflow image of
``infra/k8s/base/mlflow.yaml``. docs/operations.md ("Images") has the timings and sizes.

Every failure is a :class:`DockerError`: one line that names the fix.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.config import PipelineConfig

__all__ = [
    "DEFAULT_DOCKER_HOST",
    "LOCAL_BASE",
    "MLFLOW_IMAGE",
    "PUBLIC_BASE",
    "BuiltImage",
    "DockerError",
    "build_images",
    "check_project_image",
    "docker_client",
    "docker_host",
    "ensure_engine",
    "source_digest",
]

REPO = Path(__file__).resolve().parent.parent
DOCKER_DIR = REPO / "infra" / "docker"
#: The private engine `make images` starts when none answers (no bridge network, no iptables rules).
DOCKERD_DIR = Path("/tmp/dockerd")
DEFAULT_DOCKER_HOST = f"unix://{DOCKERD_DIR / 'docker.sock'}"
PUBLIC_BASE = "python:3.11.14-slim-bookworm"
LOCAL_BASE = "equiseg-base:bookworm"
MLFLOW_IMAGE = "ghcr.io/equiseg/mlflow:3.17.2"  # = infra/k8s/base/mlflow.yaml (tests/infra checks it)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI_INDEX = "https://pypi.org/simple"
#: Image label holding :func:`source_digest` of the tree an image was built from.
SOURCE_LABEL = "io.equiseg.source-digest"
#: What the images copy from the build context (= infra/docker/.dockerignore's allow list).
SOURCE_PATHS = ("pyproject.toml", "constraints.txt", "README.md", "equiseg", "components", "pipelines", "configs")


class DockerError(RuntimeError):
    """A Docker step failed; the message is one line that says what to do."""


# ---------------------------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------------------------


def docker_host() -> str:
    """``$DOCKER_HOST``, else the private socket `make images` starts an engine on."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker_client(host: str | None = None, *, timeout: int = 600) -> Any:
    """A docker-py client for ``host`` whose engine answered a ping.

    Raises:
        DockerError: nothing answers at ``host``.
    """
    import docker

    host = host or docker_host()
    try:
        client = docker.DockerClient(base_url=host, timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerError(
            f"no Docker engine answers at {host}: run `make images` (installs and starts one on "
            f"{DEFAULT_DOCKER_HOST}), or set DOCKER_HOST to a running engine"
        ) from exc
    return client


def _answers(host: str) -> bool:
    try:
        docker_client(host, timeout=10).close()
    except DockerError:
        return False
    return True


def ensure_engine(*, log: Callable[[str], None] = print) -> str:
    """Return the host of an engine that answers, installing (apt) and starting ``dockerd`` where needed.

    Raises:
        DockerError: ``$DOCKER_HOST`` names an engine that does not answer, or the engine cannot be installed or
            started here (not root, no apt, dockerd exits).
    """
    host = docker_host()
    if _answers(host):
        return host
    if host != DEFAULT_DOCKER_HOST:
        raise DockerError(
            f"no Docker engine answers at DOCKER_HOST={host}: start it, or unset DOCKER_HOST so `make images` "
            f"starts one on {DEFAULT_DOCKER_HOST}"
        )
    if shutil.which("dockerd") is None:
        _apt_install("docker.io", log=log)
    if os.geteuid() != 0:
        raise DockerError("starting dockerd needs root: run `sudo make images`, or set DOCKER_HOST to your engine")
    DOCKERD_DIR.mkdir(parents=True, exist_ok=True)
    log_path = DOCKERD_DIR / "dockerd.log"
    log(f"starting dockerd on {host} (log: {log_path})")
    with log_path.open("a") as out:
        subprocess.Popen(
            [
                "dockerd", "--host", host, "--bridge=none", "--iptables=false",
                "--exec-root", str(DOCKERD_DIR / "exec"), "--pidfile", str(DOCKERD_DIR / "docker.pid"),
            ],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _answers(host):
        if time.monotonic() > deadline:
            raise DockerError(f"dockerd did not answer on {host} within 60 s: read {log_path} and fix what it reports")
        time.sleep(1)
    return host


def _apt_install(package: str, *, log: Callable[[str], None]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerError(f"{package} is not installed: install it (Debian: `sudo apt-get install -y {package}`)")
    log(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DockerError(f"`{' '.join(command)}` failed ({tail[0]}): fix apt and rerun `make images`")


# ---------------------------------------------------------------------------------------------------------------------
# Build inputs: base image, torch index, CA bundle, source digest
# ---------------------------------------------------------------------------------------------------------------------


def _image_exists(client: Any, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_base(client: Any, host: str, *, log: Callable[[str], None] = print) -> str:
    """The base image to build on: the public one where a registry serves it, else a local Debian base.

    The local base is ``debootstrap --variant=minbase bookworm`` with python3.11, venv and CA certificates,
    imported as :data:`LOCAL_BASE` (made once; the engine keeps it).
    """
    import docker

    if _image_exists(client, PUBLIC_BASE):
        return PUBLIC_BASE
    try:
        client.images.pull(PUBLIC_BASE)
        return PUBLIC_BASE
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc).splitlines()[0][:120]
    if _image_exists(client, LOCAL_BASE):
        log(f"no registry serves {PUBLIC_BASE} ({reason}): building on the local base {LOCAL_BASE}")
        return LOCAL_BASE
    log(f"no registry serves {PUBLIC_BASE} ({reason}): making the local base {LOCAL_BASE} with debootstrap")
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap", log=log)
    with tempfile.TemporaryDirectory(prefix="equiseg-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = [
            "debootstrap", "--variant=minbase",
            "--include=python3.11,python3.11-venv,python3-distutils,ca-certificates",
            "bookworm", str(rootfs), "http://deb.debian.org/debian",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DockerError(f"debootstrap failed ({tail[0]}): check that deb.debian.org is reachable and rerun")
        cli = shutil.which("docker") or "/usr/bin/docker"
        env = {**os.environ, "DOCKER_HOST": host}
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [cli, "import", "-", LOCAL_BASE], stdin=tar.stdout, env=env, capture_output=True, text=True, check=False
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise DockerError(
                f"`docker import` of the debootstrap tree failed ({imported.stderr.strip()[:160]}): fix and rerun"
            )
    return LOCAL_BASE


def _reachable(url: str, cafile: str | None) -> bool:
    import ssl

    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return bool(response.status < 400)
    except (urllib.error.URLError, OSError):
        return False


def pip_cert() -> str | None:
    """The CA bundle the host's pip trusts (``$PIP_CERT``, pip's ``cert`` setting, or Debian's bundle)."""
    if os.environ.get("PIP_CERT"):
        return os.environ["PIP_CERT"]
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.rsplit(".", 1)[-1] == "cert" and value.strip("'\" "):
            return value.strip("'\" ")
    debian = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(debian) if debian.is_file() else None


def _source_files(repo: Path) -> Iterator[Path]:
    for name in SOURCE_PATHS:
        path = repo / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                parts = set(file.relative_to(repo).parts)
                if file.is_file() and "__pycache__" not in parts and file.suffix not in (".pyc", ".pyo"):
                    yield file


def source_digest(repo: Path = REPO) -> str:
    """sha256 over the paths and bytes the images copy from ``repo``: which sources an image holds."""
    digest = hashlib.sha256()
    for file in _source_files(repo):
        digest.update(str(file.relative_to(repo)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    """One image `make images` built: its tag, build wall time and size on disk."""

    tag: str
    dockerfile: str
    seconds: float
    size_bytes: int


def _buildkit_cli(host: str) -> list[str]:
    """A docker CLI that builds with BuildKit here: ``docker buildx build`` or a pre-23 client's built-in BuildKit."""
    candidates = dict.fromkeys(p for p in (shutil.which("docker"), "/usr/bin/docker") if p and Path(p).is_file())
    env = {**os.environ, "DOCKER_HOST": host}
    for cli in candidates:
        if subprocess.run([cli, "buildx", "version"], env=env, capture_output=True, check=False).returncode == 0:
            return [cli, "buildx", "build", "--load"]
        version = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"], env=env, capture_output=True, text=True, check=False
        ).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return [cli, "build"]
    raise DockerError(
        "no docker CLI here builds with BuildKit: install the buildx plugin, or Debian's docker.io (its client has "
        "BuildKit built in)"
    )


def _build(
    cli: list[str], host: str, dockerfile: str, tag: str, args: dict[str, str], cert: str | None, log_path: Path
) -> float:
    command = [*cli, "--network", "host", "--progress", "plain", "-f", str(DOCKER_DIR / dockerfile), "-t", tag]
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    if cert:
        command += ["--secret", f"id=pip_cert,src={cert}"]
    started = time.perf_counter()
    with log_path.open("w") as out:
        done = subprocess.run(
            [*command, str(REPO)],
            env={**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        last = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-1:]
        raise DockerError(
            f"building {tag} from infra/docker/{dockerfile} failed ({last[0].strip()[:160] if last else 'no output'}); "
            f"fix what {log_path} ends with and rerun `make images`"
        )
    return time.perf_counter() - started


def _python_in(client: Any, image: str, code: str) -> tuple[int, str]:
    """Run ``python -c code`` in ``image`` (no network, the image's user); (exit code, output)."""
    import docker

    try:
        container = client.containers.run(
            image, entrypoint=["python", "-c", code], network_mode="none", detach=True, stdout=True, stderr=True
        )
    except docker.errors.APIError as exc:  # e.g. no python in the image
        return 127, str(exc.explanation or exc)
    try:
        code_ = int(container.wait(timeout=300)["StatusCode"])
        return code_, container.logs().decode(errors="replace").strip()
    finally:
        container.remove(force=True)


def check_project_image(client: Any, image: str, *, repo: Path = REPO) -> None:
    """Fail unless ``image`` exists, holds the equiseg project and was built from the sources in ``repo``.

    Raises:
        DockerError: the image is missing, cannot import the project, or holds other sources than ``repo``.
    """
    import docker

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise DockerError(f"image {image} is not on the engine at {docker_host()}: run `make images`") from None
    status, output = _python_in(client, image, "import components, pipelines, equiseg.steps")
    if status != 0:
        last = output.splitlines()[-1:] or ["no output"]
        raise DockerError(f"image {image} does not hold the equiseg project ({last[0][:120]}): run `make images`")
    built_from = (found.labels or {}).get(SOURCE_LABEL, "")
    if built_from != source_digest(repo):
        raise DockerError(
            f"image {image} was built from other sources than {repo} (label {SOURCE_LABEL}={built_from or 'none'}): "
            "run `make images` to rebuild it (cached: a minute)"
        )


def build_images(
    *,
    log: Callable[[str], None] = print,
    log_dir: Path | None = None,
    images: Iterable[str] = ("cpu", "gpu", "mlflow"),
    base: str | None = None,
) -> list[BuiltImage]:
    """`make images`: engine, base, then the CPU, GPU and MLflow images, each checked after its build.

    Where the CPU-only torch index is unreachable the CPU image gets PyPI's torch (the CUDA build) and says so;
    the GPU image is then finished from the CPU image (``GPU_FROM``) and shares all its layers. ``base`` replaces
    the base image (default: :func:`ensure_base`), e.g. a mirrored ``python:3.11-slim``.

    Raises:
        DockerError: no engine, a failed build, or an image that fails its check (no project, no CUDA torch).
    """
    wanted = set(images)
    host = ensure_engine(log=log)
    client = docker_client(host)
    cli = _buildkit_cli(host)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="equiseg-images-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig()
    base = base or ensure_base(client, host, log=log)
    cert = pip_cert()
    torch_index = TORCH_CPU_INDEX
    if wanted & {"cpu", "gpu"} and not _reachable(f"{TORCH_CPU_INDEX}/", cert):
        torch_index = PYPI_INDEX
        log(f"{TORCH_CPU_INDEX} is unreachable: the CPU image gets PyPI's torch (the CUDA build, a few GB larger)")
    common = {"VCS_REF": _git_head(), "SOURCE_DIGEST": source_digest()}
    plan: list[tuple[str, str, str, dict[str, str]]] = [
        ("cpu", "Dockerfile", cfg.image, {"PYTHON_IMAGE": base, "TORCH_INDEX_URL": torch_index, **common}),
        ("mlflow", "Dockerfile.mlflow", MLFLOW_IMAGE, {"PYTHON_IMAGE": base, **common}),
    ]
    if "gpu" in wanted:
        if torch_index == PYPI_INDEX:
            gpu_args = {"GPU_FROM": cfg.image, **common}
            wanted.add("cpu")
        elif base == LOCAL_BASE:
            raise DockerError(
                "the GPU image needs nvidia/cuda and python base images from a registry: make one reachable "
                "(or mirror them) and rerun `make images`"
            )
        else:
            gpu_args = dict(common)
        plan.append(("gpu", "Dockerfile.gpu", cfg.gpu_image, gpu_args))
    built = []
    for name, dockerfile, tag, args in plan:
        if name not in wanted:
            continue
        log(f"building {tag} (infra/docker/{dockerfile}) ...")
        previous = client.images.get(tag).id if _image_exists(client, tag) else None
        seconds = _build(cli, host, dockerfile, tag, args, cert, log_dir / f"{name}.log")
        image = client.images.get(tag)
        if previous and previous != image.id:
            _remove_untagged(client, previous)
        built.append(BuiltImage(tag, dockerfile, round(seconds, 1), int(image.attrs["Size"])))
        log(f"built {tag} in {seconds:.0f} s, {image.attrs['Size'] / 1e9:.2f} GB")
        if name != "mlflow":
            check_project_image(client, tag)
    if "gpu" in wanted:
        status, output = _python_in(
            client,
            cfg.gpu_image,
            "import torch; assert torch.version.cuda, 'CPU-only torch'; print(torch.version.cuda)",
        )
        if status != 0:
            raise DockerError(f"{cfg.gpu_image} has no CUDA torch ({output.splitlines()[-1:]}): fix Dockerfile.gpu")
        log(f"{cfg.gpu_image}: torch built with CUDA {output.splitlines()[-1]}")
    client.close()
    return built


# ---------------------------------------------------------------------------------------------------------------------
# Running: the user tasks run as, PostgreSQL databases, the MLflow server container
# ---------------------------------------------------------------------------------------------------------------------

#: The images' user (infra/docker: uid/gid 10001); tasks run as it when the launcher is root.
IMAGE_UID = 10001
#: MLflow's backend store (and the promotion lock's database); Optuna gets ``<database>_optuna`` on the same server.
DEFAULT_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/equiseg"


def container_user() -> str:
    """``uid:gid`` tasks run as: never root; the launcher's own ids, or the images' user when the launcher is root."""
    if os.geteuid() == 0:
        return f"{IMAGE_UID}:{IMAGE_UID}"
    return f"{os.getuid()}:{os.getgid()}"


def give_to_containers(path: Path) -> Path:
    """Create ``path`` and let :func:`container_user` write in it (a chown only when the launcher is root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, IMAGE_UID, IMAGE_UID)
    return path


def ensure_database(url: str) -> str:
    """Create the database of the PostgreSQL SQLAlchemy ``url`` unless it exists; return ``url``.

    Raises:
        DockerError: the server does not answer, or ``url`` names no database.
    """
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.database:
        raise DockerError(f"{url} names no database: end it with /<database>, e.g. {DEFAULT_POSTGRES}")
    try:
        admin = psycopg2.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username, password=parsed.password,
            dbname="postgres", connect_timeout=10,
        )  # fmt: skip
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DockerError(f"PostgreSQL at {parsed.host}:{parsed.port or 5432} does not answer ({first}): start it, "
                          "or pass --postgres with a server that does") from exc  # fmt: skip
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        admin.close()
    return url


def sibling_database(url: str, suffix: str) -> str:
    """``url`` with its database renamed ``<database><suffix>`` (Optuna's own database next to MLflow's)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return str(parsed.set(database=f"{parsed.database}{suffix}").render_as_string(hide_password=False))


@dataclass(frozen=True)
class MlflowServer:
    """An MLflow server container: its URL, the PostgreSQL backend store, the container's name."""

    url: str
    backend_store: str
    container: str


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow_server(client: Any, *, backend_store: str, artifacts: Path, port: int, name: str) -> MlflowServer:
    """Serve :data:`MLFLOW_IMAGE` on ``127.0.0.1:port`` (host network) over ``backend_store``, proxying artifacts to
    ``artifacts`` (``--serve-artifacts``); a running container of that name and command is reused.

    Raises:
        DockerError: the image is missing, or the server exits or stays unhealthy for 120 s (its last log line).
    """
    import docker
    from docker.types import Mount

    url = f"http://127.0.0.1:{port}"
    command = [
        "server", "--backend-store-uri", backend_store, "--artifacts-destination", str(artifacts),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    for old in client.containers.list(all=True, filters={"name": f"^{name}$"}):
        if old.status == "running" and old.attrs["Args"] == command and _healthy(url):
            return MlflowServer(url, backend_store, name)
        old.remove(force=True)
    if not _image_exists(client, MLFLOW_IMAGE):
        raise DockerError(f"image {MLFLOW_IMAGE} is not on the engine at {docker_host()}: run `make images`")
    give_to_containers(artifacts)
    container = client.containers.run(
        MLFLOW_IMAGE, command=command, name=name, detach=True, network_mode="host", user=container_user(),
        mounts=[Mount(str(artifacts), str(artifacts), type="bind")],
        environment={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "HOME": "/tmp"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _healthy(url):
        container.reload()
        if container.status != "running" or time.monotonic() > deadline:
            last = container.logs(tail=5).decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise DockerError(f"the MLflow server container {name} did not become healthy on {url} ({last[0][:160]}): "
                              "fix that and rerun")  # fmt: skip
        time.sleep(1)
    return MlflowServer(url, backend_store, name)


def stop_mlflow_server(client: Any, name: str) -> None:
    """Remove the MLflow server container ``name`` (nothing if there is none)."""
    for old in client.containers.list(all=True, filters={"name": f"^{name}$"}):
        old.remove(force=True)


def _remove_untagged(client: Any, image_id: str) -> None:
    """Drop an image a rebuild replaced (its layers stay where the new image shares them); kept while in use."""
    import docker

    with contextlib.suppress(docker.errors.APIError):
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)


def _git_head() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.containers images|mlflow-server``: what `make images` and `make mlflow-server` run."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.containers")
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="install/start the engine if needed and build the CPU, GPU, MLflow images")
    images.add_argument("--only", default="cpu,gpu,mlflow", help="comma-separated subset of cpu,gpu,mlflow")
    images.add_argument("--log-dir", type=Path, default=REPO / "runs" / "images", help="one build log per image")
    server = sub.add_parser("mlflow-server", help="serve the MLflow image on PostgreSQL with proxied artifacts")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--postgres", default=DEFAULT_POSTGRES, help="the backend store (SQLAlchemy URL)")
    server.add_argument("--artifacts", type=Path, default=Path("runs/.docker/mlflow-artifacts"))
    args = parser.parse_args(argv)
    try:
        if args.command == "images":
            for image in build_images(images=args.only.split(","), log_dir=args.log_dir):
                print(f"{image.tag:<40} {image.seconds:>7.1f} s {image.size_bytes / 1e9:>6.2f} GB")
        else:
            client = docker_client()
            found = start_mlflow_server(
                client,
                backend_store=ensure_database(args.postgres),
                artifacts=args.artifacts.resolve(),
                port=args.port,
                name=f"equiseg-mlflow-{args.port}",
            )
            print(f"MLflow server {found.container} on {found.url} (backend {found.backend_store})")
    except DockerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
