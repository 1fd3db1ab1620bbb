"""The pip-requirements cache is bounded (R23): a tenant asking for many requirement sets cannot fill the disk.
Real pip installs real wheels from an index on disk; the cache is the real directory the sandbox mounts."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from recalld.sandbox.requirements import RequirementsCache, RequirementsError

PROJECT, MODULE = "recalld-cache-probe", "recalld_cache_probe"
VERSIONS = ["1.0", "1.1", "1.2", "1.3"]
PADDING = 40_000  # bytes of data in each wheel's module, so sizes are well above the bookkeeping files


def _wheel(project_dir: Path, version: str) -> str:
    dist = f"{MODULE}-{version}.dist-info"
    files = {
        f"{MODULE}/__init__.py": f"VERSION = {version!r}\nPAD = {'x' * PADDING!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: recalld-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = project_dir / f"{MODULE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel.name


@pytest.fixture(scope="module")
def pipcache_index(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("pipcache-index") / "simple"
    project = root / PROJECT
    project.mkdir(parents=True)
    links = "".join(f'<a href="{_wheel(project, v)}">{v}</a>' for v in VERSIONS)
    (project / "index.html").write_text(f"<html><body>{links}</body></html>")
    (root / "index.html").write_text(f'<html><body><a href="{PROJECT}/">{PROJECT}</a></body></html>')
    return root.as_uri()


def _cache(root: Path, index_url: str, **bounds) -> RequirementsCache:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    bounds.setdefault("in_use_grace_s", 0.0)
    return RequirementsCache(root, index_url=index_url, python_version=version, timeout_s=60, **bounds)


def _req(version: str) -> list[str]:
    return [f"{PROJECT}=={version}"]


def _present(cache: RequirementsCache) -> set[str]:
    installed = {p.name for p in cache.root.iterdir() if not p.name.startswith(".")}
    return {v for v in VERSIONS if cache.directory_for(_req(v)).name in installed}


async def _use(cache: RequirementsCache, org: str, version: str) -> None:
    async with cache.use(org, _req(version)) as path:
        assert f"VERSION = {version!r}" in (path / MODULE / "__init__.py").read_text()


async def test_an_organization_keeps_at_most_its_sets_its_least_recently_used_goes(tmp_path, pipcache_index):
    cache = _cache(tmp_path, pipcache_index, sets_per_org=2)
    await _use(cache, "org-b", "1.3")
    for version in ("1.0", "1.1"):
        await _use(cache, "org-a", version)
    await _use(cache, "org-a", "1.0")  # 1.1 is now org-a's least recently used
    await _use(cache, "org-a", "1.2")
    assert _present(cache) == {"1.0", "1.2", "1.3"}  # org-b's set is not org-a's to give up


async def test_a_set_shared_with_another_organization_stays_for_it(tmp_path, pipcache_index):
    cache = _cache(tmp_path, pipcache_index, sets_per_org=1)
    await _use(cache, "org-a", "1.0")
    await _use(cache, "org-b", "1.0")
    await _use(cache, "org-a", "1.1")  # org-a gives up 1.0, org-b still has it
    assert _present(cache) == {"1.0", "1.1"}
    await _use(cache, "org-b", "1.2")
    assert _present(cache) == {"1.1", "1.2"}


async def test_over_the_per_org_cap_with_every_set_in_use_is_refused_before_installing(tmp_path, pipcache_index):
    cache = _cache(tmp_path, pipcache_index, sets_per_org=2)
    async with cache.use("org-a", _req("1.0")), cache.use("org-a", _req("1.1")):
        with pytest.raises(RequirementsError, match="at most|most this server keeps"):
            await _use(cache, "org-a", "1.2")
    assert _present(cache) == {"1.0", "1.1"}


async def test_the_cache_stays_under_its_size_removing_least_recently_used_sets(tmp_path, pipcache_index):
    probe = _cache(tmp_path / "probe", pipcache_index)
    await _use(probe, "org-a", "1.0")
    one_set = int((probe.directory_for(_req("1.0")) / ".recalld-size").read_text())
    assert one_set > PADDING
    cache = _cache(tmp_path / "cache", pipcache_index, max_bytes=int(2.5 * one_set), sets_per_org=10)
    await _use(cache, "org-a", "1.0")
    await _use(cache, "org-b", "1.1")
    await _use(cache, "org-a", "1.0")  # 1.1 is the least recently used
    await _use(cache, "org-c", "1.2")
    assert _present(cache) == {"1.0", "1.2"}
    sizes = sum(int((p / ".recalld-size").read_text()) for p in tmp_path.joinpath("cache").iterdir()
                if not p.name.startswith("."))
    assert sizes <= cache.max_bytes


async def test_a_set_in_use_is_never_removed(tmp_path, pipcache_index):
    probe = _cache(tmp_path / "probe", pipcache_index)
    await _use(probe, "org-a", "1.0")
    one_set = int((probe.directory_for(_req("1.0")) / ".recalld-size").read_text())
    cache = _cache(tmp_path / "cache", pipcache_index, max_bytes=int(2.5 * one_set), sets_per_org=10)
    async with cache.use("org-a", _req("1.0")) as held:
        await _use(cache, "org-b", "1.1")
        await _use(cache, "org-c", "1.2")
        await _use(cache, "org-d", "1.3")
        assert (held / MODULE / "__init__.py").exists()
        assert "1.0" in _present(cache)


async def test_recently_used_sets_count_as_in_use_and_a_full_cache_refuses(tmp_path, pipcache_index):
    probe = _cache(tmp_path / "probe", pipcache_index)
    await _use(probe, "org-a", "1.0")
    one_set = int((probe.directory_for(_req("1.0")) / ".recalld-size").read_text())
    # Another instance sharing the directory may run a set it used a moment ago: the grace period keeps it.
    cache = _cache(tmp_path / "cache", pipcache_index, max_bytes=int(1.5 * one_set), in_use_grace_s=600)
    await _use(cache, "org-a", "1.0")
    with pytest.raises(RequirementsError, match="full with sets in use"):
        await _use(cache, "org-b", "1.1")
    assert _present(cache) == {"1.0"}


async def test_a_set_larger_than_the_whole_cache_is_refused_and_removed(tmp_path, pipcache_index):
    cache = _cache(tmp_path, pipcache_index, max_bytes=PADDING // 2)
    with pytest.raises(RequirementsError, match="more than this server's cache"):
        await _use(cache, "org-a", "1.0")
    assert _present(cache) == set()
