"""deploy/k8s/components/cluster: either layout pointed at a Redis Cluster, arq's queue on the bundled Redis, rendered
by the real kustomize and validated against the Kubernetes schemas like the overlays (tests/test_deploy.py) and the
Sentinel component (tests/test_deploy_sentinel.py)."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from relay.config.redis_url import is_cluster_url
from relay.config.settings import Settings
from tests.test_deploy import (
    DEPLOY,
    K8S_VERSIONS,
    OVERLAY_NAMES,
    SECRET_NAME,
    env,
    find,
    relay_containers,
    render,
    render_with_component,
)

COMPONENT = DEPLOY / "k8s" / "components" / "cluster"
CHANGED_ENV = ("REDIS_URL", "RELAY_ARQ_REDIS_URL", "RELAY_REDIS_MIN_REPLICAS")
ARQ_URL = "redis://relay-redis:6379/0"


def render_with_cluster(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay plus the component, as a user's kustomization would combine them."""
    return render_with_component(COMPONENT, overlay)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_with_the_cluster_component_is_valid_kubernetes(overlay: str, version: str) -> None:
    for obj in render_with_cluster(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}+cluster: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc}")


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_cluster_component_points_relay_at_the_secrets_url_and_arq_at_the_bundled_redis(overlay: str) -> None:
    objects = render_with_cluster(overlay)
    assert find(objects, "StatefulSet", "relay-redis"), "the bundled Redis stays, for arq's queue"
    containers = list(relay_containers(objects))
    assert len(containers) == 2
    for _, container in containers:
        variables = env(container)
        assert "value" not in variables["REDIS_URL"], container["name"]
        ref = variables["REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (SECRET_NAME, "redis-url") and ref.get("optional") is not True
        assert variables["RELAY_ARQ_REDIS_URL"]["value"] == ARQ_URL
        assert variables["RELAY_REDIS_MIN_REPLICAS"]["value"] == "1"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_cluster_component_changes_nothing_else(overlay: str) -> None:
    def normalised(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
        out = []
        for obj in copy.deepcopy(objects):
            for _, container in relay_containers((obj,)):
                container["env"] = [e for e in container["env"] if e["name"] not in CHANGED_ENV]
            out.append(obj)
        return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))

    assert normalised(render_with_cluster(overlay)) == normalised(render(overlay))


def test_the_documented_urls_are_ones_relay_accepts_together() -> None:
    text = (COMPONENT / "kustomization.yaml").read_text()
    (url,) = re.findall(r"redis-url='([^']+)'", text)
    settings = Settings.from_env({"REDIS_URL": url, "RELAY_ARQ_REDIS_URL": ARQ_URL})
    assert settings.redis_url == url and is_cluster_url(url)
    assert settings.arq_redis_url == ARQ_URL
    docs = (DEPLOY.parent / "docs" / "operations.md").read_text()
    assert url in docs, "docs/operations.md shows the component's URL"
