"""arq silently ignores misspelled settings: every WorkerSettings attribute must be a Worker parameter."""

from __future__ import annotations

import inspect

from arq.worker import Worker

from workers.main import WorkerSettings, job_deserializer, job_serializer, worker_kwargs


def test_every_setting_is_a_worker_parameter() -> None:
    params = set(inspect.signature(Worker.__init__).parameters)
    names = set(worker_kwargs())
    assert names, "no settings found"
    assert names <= params, names - params


def test_json_serialisation_round_trips() -> None:
    data = {"t": 1, "f": "resolve_item", "a": ["abc"], "k": {}}
    assert job_deserializer(job_serializer(data)) == data
    assert WorkerSettings.keep_result == 0
