"""deploy/k8s/components/sentinel: either layout pointed at a Sentinel-managed Redis, rendered by the
real kustomize and validated against the Kubernetes schemas like the overlays (tests/test_deploy.py)."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

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

COMPONENT = DEPLOY / "k8s" / "components" / "sentinel"
BUNDLED_REDIS = {("StatefulSet", "relay-redis"), ("Service", "relay-redis"), ("ConfigMap", "relay-redis-config")}
BUNDLED_REDIS |= {("NetworkPolicy", "relay-redis")}
CHANGED_ENV = ("REDIS_URL", "RELAY_REDIS_MIN_REPLICAS")


def render_with_sentinel(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay plus the component, as a user's kustomization would combine them."""
    return render_with_component(COMPONENT, overlay)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_with_the_sentinel_component_is_valid_kubernetes(overlay: str, version: str) -> None:
    for obj in render_with_sentinel(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}+sentinel: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc}")


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_sentinel_component_points_every_relay_container_at_the_secrets_url(overlay: str) -> None:
    objects = render_with_sentinel(overlay)
    assert not {(o["kind"], o["metadata"]["name"]) for o in objects} & BUNDLED_REDIS, "the bundled Redis is gone"
    containers = list(relay_containers(objects))
    assert len(containers) == 2
    for _, container in containers:
        variables = env(container)
        assert "value" not in variables["REDIS_URL"], container["name"]
        ref = variables["REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (SECRET_NAME, "redis-url") and ref.get("optional") is not True
        assert variables["RELAY_REDIS_MIN_REPLICAS"]["value"] == "1"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_sentinel_component_changes_nothing_else(overlay: str) -> None:
    def normalised(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
        out = []
        for obj in copy.deepcopy(objects):
            if (obj["kind"], obj["metadata"]["name"]) in BUNDLED_REDIS:
                continue
            for _, container in relay_containers((obj,)):
                container["env"] = [
                    e for e in container["env"] if e["name"] not in ("REDIS_URL", "RELAY_REDIS_MIN_REPLICAS")
                ]
            out.append(obj)
        return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))

    assert normalised(render_with_sentinel(overlay)) == normalised(render(overlay))
    assert find(render(overlay), "StatefulSet", "relay-redis"), "the overlay alone keeps its Redis"


def test_the_documented_sentinel_url_is_one_relay_accepts() -> None:
    text = (COMPONENT / "kustomization.yaml").read_text()
    (url,) = re.findall(r"redis-url='([^']+)'", text)
    settings = Settings.from_env({"REDIS_URL": url})
    assert settings.redis_url == url
