"""Every test under tests/integration carries the ``integration`` marker, so ``-m "not integration"`` skips them all."""
from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def serve_endpoints_prestart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The ``test_serve_endpoints.py`` server, launched early (not waited for) when that module is in the run.

    Its model loading (faithfulness specialist, intent model, MiniLM, the hybrid index: about 50 s on a loaded
    2-core machine) then overlaps ``test_serve.py``, whose own server and tests leave a core mostly idle,
    instead of running alone after it. ``test_serve.py``'s ``server`` fixture asks for this one after
    launching its own server; ``test_serve_endpoints.py``'s ``server`` fixture takes the process from here (or
    launches it itself when this yields ``None``) and stops it when its module ends. The same command, the
    same checks: only the start moves earlier. ``None`` when the module is not in the run or its data is
    missing (the module then skips on its own).
    """
    if not any(Path(str(item.fspath)).name == "test_serve_endpoints.py" for item in request.session.items):
        yield None
        return
    from tests.integration import test_serve_endpoints as mod

    try:
        handle = mod.start_server(tmp_path_factory)
    except pytest.skip.Exception:
        yield None
        return
    try:
        yield handle
    finally:
        handle.stop()
