from __future__ import annotations

import pytest

from services.common.storage import InvalidKeyError, ObjectNotFoundError, ObjectStore, validate_key


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "a/../../b", "/abs", "a//b", "a/./b", "a\\b", "", "a/b/", "caf\x00e", "x" * 1000],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


def test_round_trip_list_delete(any_store: ObjectStore) -> None:
    any_store.put_bytes("a/b/one.bin", b"1")
    any_store.put_json("a/two.json", {"x": 1})
    any_store.put_bytes("other/three.bin", b"3")
    assert any_store.get_bytes("a/b/one.bin") == b"1"
    assert any_store.get_json("a/two.json") == {"x": 1}
    assert list(any_store.list("a/")) == ["a/b/one.bin", "a/two.json"]
    assert any_store.exists("a/two.json") and not any_store.exists("a/missing")
    any_store.delete("a/two.json")
    with pytest.raises(ObjectNotFoundError):
        any_store.get_bytes("a/two.json")


def test_traversal_is_refused_by_every_method(any_store: ObjectStore) -> None:
    for call in (
        lambda: any_store.put_bytes("../escape", b"x"),
        lambda: any_store.get_bytes("a/../../escape"),
        lambda: any_store.exists("../x"),
        lambda: list(any_store.list("../")),
        lambda: any_store.delete("../x"),
    ):
        with pytest.raises(InvalidKeyError):
            call()


def test_content_addressed_put_stores_once(any_store: ObjectStore) -> None:
    first_key, created = any_store.put_content_addressed("images/raw", b"pixels", "png", "image/png")
    again_key, created_again = any_store.put_content_addressed("images/raw", b"pixels", "png", "image/png")
    assert first_key == again_key and created and not created_again
    assert first_key.startswith("images/raw/") and first_key.endswith(".png")
