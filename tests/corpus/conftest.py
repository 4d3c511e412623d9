"""The service fixtures of ``tests/service`` (tiny checkpoint, ``live`` and ``serve`` apps), shared here."""

from tests.service.conftest import (  # noqa: F401 - pytest finds fixtures by name in this module
    _restore_torch_threads,
    live,
    serve,
    settings,
    tiny_checkpoint,
    until,
)
