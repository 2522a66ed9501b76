"""A non-editable install (``pip install .``) carries the configs: the registry, prices and prompts load from it.

Before issue 14 a wheel shipped no ``configs/``, so ``Registry()`` and ``Prices.load()`` failed
outside a checkout. The package is built from a copy of the sources into a ``--target`` folder and
used from another directory by a fresh interpreter that cannot see this checkout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Every root package (pyproject's import-linter list): the CLI registers commands from several of them.
PACKAGES = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["root_packages"])

_CHECK = r'''
import os, sys
sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not str(getattr(h, "__module__", "")).startswith("__editable__")]
sys.path_importer_cache.clear()
from pathlib import Path
import registry
site = Path(os.environ["SITE"]).resolve()
assert Path(registry.__file__).resolve().is_relative_to(site), registry.__file__
assert registry.config_dir() == site / "registry" / "configs", registry.config_dir()
reg = registry.Registry()
assert {"minilm", "reranker-l6", "smollm2"} <= set(reg.names()), reg.names()
assert reg.resolve("minilm", "embedder").path.is_dir()
prices = registry.load_prices()
assert prices.cpu_core_hour_usd > 0 and "gpt-4o-mini" in prices.llms, prices.raw
assert registry.load_judge_prompts()["version"]
try:
    reg.resolve("reranker-l6", "cross-encoder")
except FileNotFoundError as exc:
    assert "RAGFIX_HOME" in str(exc), exc
else:
    raise AssertionError("a project model resolved inside site-packages")
os.environ["RAGFIX_HOME"] = os.environ["CHECKOUT"]
assert reg.resolve("reranker-l6", "cross-encoder").path.is_dir()
print("INSTALL-OK")
'''


def test_non_editable_install_loads_registry_prices_and_prompts(tmp_path):
    src, site, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    for name in (*PACKAGES, "configs"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                          str(site), str(src)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (site / "registry" / "configs" / "prices.yaml").is_file() and not (site / "registry" / "configs").is_symlink()
    env = {k: v for k, v in os.environ.items() if k not in ("RAGFIX_CONFIG_DIR", "RAGFIX_MODELS_CONFIG", "RAGFIX_HOME")}
    env.update(PYTHONPATH=str(site), SITE=str(site), CHECKOUT=str(ROOT), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", _CHECK], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "INSTALL-OK" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['ragfix', '--help']; import bench.cli; bench.cli.main()"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert "demo" in cli.stdout, cli.stdout[-2000:] + cli.stderr[-2000:]
