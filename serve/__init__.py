"""``ragfix serve``: the reranker behind an HTTP endpoint with admission control (failure mode VIII at the server).

:mod:`serve.app` builds the FastAPI app (``/v1/rerank``, ``/healthz``, ``/readyz``, ``/metrics``),
:mod:`serve.server` runs it under uvicorn with a SIGTERM drain, :mod:`serve.config` reads the
settings (reference: ``docs/serve.md``), :mod:`serve.cli` parses ``ragfix serve``. serve sits in the
top layer beside bench and imports neither bench nor anything above the registry.
"""
from serve.config import ServeConfig, ServeConfigError, load_config

__all__ = ["ServeConfig", "ServeConfigError", "load_config"]
