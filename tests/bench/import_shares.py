"""Each import's share of a ``relay serve``'s resident memory: ``python -m tests.bench.import_shares``.

In a fresh interpreter (this one's Python, run once per ``--runs``), the steps below run in order, and each is
given what the process's resident memory (``/proc/self/status``: RssAnon, RssFile) grew by while it ran. A module
two steps share counts in the first one that imports it, so the order is the one ``relay serve`` imports them in;
the last steps are what it builds or loads later (the app, the OpenAPI document, the first request body, the first
sealed value). Which of them a serve at rest holds is ``tests/test_lean_imports.py``'s business, not this one's:
this measures what each costs. docs/performance-log.md has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ENCRYPTION_KEY, SECRET

__all__ = ["STEPS", "main"]

#: (label, Python run in the measured process); in relay serve's import order
STEPS: tuple[tuple[str, str], ...] = (
    ("asyncio, ssl (OpenSSL's start-up), socket", "import asyncio, ssl, socket"),
    ("logging, json, argparse, subprocess, tempfile", "import logging, json, argparse, subprocess, tempfile"),
    ("structlog (rich and greenlet hidden: relay/__init__.py)", "import relay"),
    ("greenlet (structlog's threadlocal would import it; hidden now)", "import greenlet"),
    ("aiohttp's client (with email, attrs, yarl, multidict)", "import aiohttp"),
    ("aiohttp's server (aiohttp.web)", "import aiohttp.web"),
    ("redis-py (redis.asyncio, its cluster and sentinel modules)", "import redis, redis.asyncio"),
    ("prometheus-client (with wsgiref, http.server)", "import prometheus_client, prometheus_client.exposition"),
    ("orjson, standardwebhooks", "import orjson, standardwebhooks"),
    ("relay's settings, logs, metrics", "import relay.config.settings, relay.logs, relay.metrics"),
    ("relay's store (scripts, keys, batched writes)", "import relay.store.open, relay.store.connections"),
    ("the CLI (its parsers, start-up checks)", "import relay.cli.main"),
    ("the API's routes, handlers and middlewares (relay.api.app)", "import relay.api.app, relay.cli.dev"),
    ("arq (its queue: the worker's)", "import arq.connections"),
    ("the cluster client (a redis+cluster:// URL's)", "import relay.store.cluster_client"),
    ("pydantic and pydantic-core", "import pydantic"),
    ("the request models (JobCreate, JobPatch, Redeliver, Action)", "import relay.api.models"),
    ("the answer models (relay.api.schemas; defer_build)", "import relay.api.schemas"),
    ("the credential specs' models (RELAY_CREDENTIALS), tomllib", "import relay.config.credentials"),
    (
        "the app built (create_app: routes, query parameters)",
        "from relay.config.settings import Settings; from relay.api.app import create_app;"
        " app = create_app(Settings.from_env())",
    ),
    (
        "a request body validated (JobCreate's validator in use)",
        "from relay.api.models import JobCreate; JobCreate.model_validate({'monitorUrl': 'https://a.example/m',"
        " 'callbackUrl': 'https://b.example/h', 'metadata': {'k': 1}})",
    ),
    (
        "the OpenAPI document (first GET /openapi.json)",
        "from relay.api.openapi import openapi_document; from relay.api.app import ROUTES; openapi_document(ROUTES)",
    ),
    (
        "cryptography (the first value sealed)",
        f"from relay.core.crypto import Vault; Vault(({ENCRYPTION_KEY!r},)).seal('https://a.example/m')",
    ),
    ("ctypes and malloc_trim(0) (here: nothing freed to give back)", "import ctypes; ctypes.CDLL(None).malloc_trim(0)"),
)

_CHILD = """
import json, sys
def rss():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["RssAnon"], fields["RssFile"]
out = [("Python itself (interpreter, site)", *rss())]
for label, code in json.loads(sys.argv[1]):
    before = rss()
    exec(code, {})
    after = rss()
    out.append((label, after[0] - before[0], after[1] - before[1]))
print(json.dumps(out))
"""


def measure(steps: tuple[tuple[str, str], ...]) -> list[tuple[str, float, float]]:
    """(label, MiB anonymous, MiB file-backed) of each step, in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(RELAY_SIGNING_SECRETS=SECRET, RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY, REDIS_URL="redis://127.0.0.1:6379")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _CHILD, json.dumps(steps)], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    return [(label, anon, file) for label, anon, file in json.loads(out.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="fresh interpreters to measure in (each step's range)")
    args = parser.parse_args()
    runs = [measure(STEPS) for _ in range(args.runs)]
    print("| step | resident growth, MiB (anonymous + file-backed) |")
    print("| --- | --- |")
    for i, (label, _, _) in enumerate(runs[0]):
        totals = sorted(run[i][1] + run[i][2] for run in runs)
        parts = "; ".join(f"{run[i][1]:.2f} + {run[i][2]:.2f}" for run in runs)
        span = f"{totals[0]:.2f}" if totals[0] == totals[-1] else f"{totals[0]:.2f}-{totals[-1]:.2f}"
        print(f"| {label} | {span} ({parts}) |")
    for run in runs:
        print(f"total: {sum(a + f for _, a, f in run):.1f} MiB")


if __name__ == "__main__":
    main()
