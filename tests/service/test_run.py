"""`ilcs serve`: uvicorn with the app, host and port from the command line or ILCS_HOST / ILCS_PORT.

(Where the real process binds, and how it shuts down, is in test_shutdown.py.)"""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from service import run
from service.settings import get_settings


@pytest.fixture
def served(monkeypatch, tiny_checkpoint):
    calls = []

    def record(server, sockets=None):
        calls.append(
            (
                server.config.app,
                {"host": server.config.host, "port": server.config.port, "workers": server.config.workers},
            )
        )
        server.started = True

    monkeypatch.setattr(run.DrainingServer, "run", record)
    monkeypatch.setenv("ILCS_CHECKPOINT", str(tiny_checkpoint))
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_serve_runs_uvicorn_with_the_app(served):
    run.serve(host="127.0.0.1", port=8123)
    ((app, kw),) = served
    assert isinstance(app, FastAPI) and (kw["host"], kw["port"], kw["workers"]) == ("127.0.0.1", 8123, 1)


def test_serve_defaults_to_the_environment(served, monkeypatch):
    monkeypatch.setenv("ILCS_HOST", "10.0.0.5")
    monkeypatch.setenv("ILCS_PORT", "9000")
    get_settings.cache_clear()
    run.serve()
    ((_, kw),) = served
    assert (kw["host"], kw["port"]) == ("10.0.0.5", 9000)


def test_the_cli_leaves_host_and_port_to_the_settings_unless_given():
    from ilcs_cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == (None, None)
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "8001"])
    assert (args.host, args.port) == ("127.0.0.1", 8001)


def test_a_backend_this_installation_lacks_stops_serve_before_it_binds(served, monkeypatch):
    from service import backends

    monkeypatch.setattr(backends, "_installed", lambda module: module != "openvino")
    monkeypatch.setenv("ILCS_BACKEND", "openvino")
    get_settings.cache_clear()
    with pytest.raises(backends.BackendUnavailable, match=r"pip install 'ilcs-inspector\[openvino\]'"):
        run.serve()
    assert served == []
