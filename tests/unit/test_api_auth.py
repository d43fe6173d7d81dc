"""The API key ring: constant-time matching against every key, never open when empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.auth import ApiKeyRing
from api.errors import AuthNotConfigured
from core.local_secrets import API_KEY_FILE
from tests.conftest import make_settings


def test_accepts_each_configured_key_only(tmp_path: Path) -> None:
    ring = ApiKeyRing(make_settings(tmp_path / "x.db", autoforge_api_keys=" one , two ,,"))

    assert ring.accepts("one")
    assert ring.accepts("two")
    for wrong in ("", "on", "one ", "ONE", "one,two", "three", "ключ"):
        assert not ring.accepts(wrong)


def test_no_keys_refuses_instead_of_opening(tmp_path: Path) -> None:
    ring = ApiKeyRing(make_settings(tmp_path / "x.db"))

    with pytest.raises(AuthNotConfigured):
        ring.accepts("anything")


def test_a_key_generated_later_is_picked_up(tmp_path: Path) -> None:
    ring = ApiKeyRing(make_settings(tmp_path / "x.db"))
    assert ring.keys() == ()

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / API_KEY_FILE).write_text("afk_generated\n")

    assert ring.accepts("afk_generated")


def test_repr_shows_no_key(tmp_path: Path) -> None:
    ring = ApiKeyRing(make_settings(tmp_path / "x.db", autoforge_api_keys="secret-key-1"))
    ring.keys()

    assert "secret-key-1" not in repr(ring)
