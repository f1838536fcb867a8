"""The registration checks that need relay's configuration (allowed hosts, the SSRF guard), without pydantic: a
``relay serve`` at rest imports them, and every registration and PATCH runs them after its body's validation."""

from __future__ import annotations

from typing import Any

from yarl import URL

from relay.core.hosts import host_matches
from relay.outbound.ssrf import Blocked, check_url

__all__ = ["check_destinations"]


def check_destinations(
    *,
    monitor_url: str | None,
    callback_url: str | None,
    drive_item_url: str | None,
    monitor_hosts: tuple[str, ...],
    item_hosts: tuple[str, ...],
    trusted_hosts: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Registration-time checks that need configuration; the same checks run again at request time."""
    errors: list[dict[str, Any]] = []
    if monitor_url is not None and not host_matches(URL(monitor_url).host or "", monitor_hosts):
        errors.append({"field": "monitorUrl", "message": "the monitor host is not in RELAY_MONITOR_ALLOWED_HOSTS"})
    if drive_item_url is not None and not host_matches(_item_host(drive_item_url), item_hosts):
        # the DriveItem request carries a Graph token: it goes to Graph's hosts only
        errors.append({"field": "driveItemUrl", "message": "the DriveItem host is not in RELAY_ITEM_ALLOWED_HOSTS"})
    for field, url in (("monitorUrl", monitor_url), ("callbackUrl", callback_url), ("driveItemUrl", drive_item_url)):
        if url is None:
            continue
        try:
            check_url(url.replace("{resourceId}", "x"), trusted_hosts)
        except Blocked as exc:
            errors.append({"field": field, "message": str(exc)})
    return errors


def _item_host(template: str) -> str:
    return URL(template.replace("{resourceId}", "x")).host or ""
