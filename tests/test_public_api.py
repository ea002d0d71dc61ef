"""The public API is exactly ``errands.__all__`` (in the style of httpx's test_exported_members)."""

from __future__ import annotations

import types

import errands


def test_all_names_exist() -> None:
    missing = [name for name in errands.__all__ if not hasattr(errands, name)]
    assert not missing, f"in errands.__all__ but not defined: {missing}"


def test_all_is_sorted_without_duplicates() -> None:
    assert errands.__all__ == sorted(set(errands.__all__))


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(errands).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    missing = sorted(public - set(errands.__all__))
    assert not missing, f"public names of errands/__init__ missing from __all__: {missing}"


def test_version() -> None:
    assert isinstance(errands.__version__, str) and errands.__version__
