"""The two fact tiers: the cheap hash tier must give exactly the full pass's hashes."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.quality_helpers import Item, build_view, encode, textured
from winnow.quality import facts
from winnow.quality.view import ProjectView
from winnow.store.cache import FactTable


def _rotated_jpeg(im: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _items() -> list[Item]:
    big = textured(3, (1024, 768), shapes=8)
    truncated = encode(textured(4, (128, 96)), "JPEG", quality=90)
    return [
        Item("small.png", textured(1, (96, 72))),
        Item("photo.jpg", textured(2, (256, 192))),
        Item("big.jpg", big),  # DCT-scaled in both tiers
        Item("big.png", big),  # box-reduced before the LANCZOS step
        Item("rotated.jpg", _rotated_jpeg(textured(5, (200, 120)))),
        Item("grey.png", textured(6, (120, 90)).convert("L")),
        Item("alpha.png", textured(7, (90, 90)).convert("RGBA")),
        Item("tiny.png", textured(8, (20, 14))),
        Item("truncated.jpg", truncated[: len(truncated) // 2]),
    ]


def test_hash_tier_and_full_pass_agree_on_every_hash(tmp_path):
    view = build_view(tmp_path, _items())
    tier = view.hashes
    assert not (view.store.home / "cache" / facts.FACTS_TABLE).exists()  # no full pass was needed
    full = ProjectView(view.store, "p").facts  # a fresh view: the full pass, from the blobs
    names = [r.name for r in view.records]
    for key in ("phash", "dhash"):
        assert tier[key].dtype == full[key].dtype == np.uint64
        diff = [n for n, a, b in zip(names, tier[key], full[key], strict=True) if a != b]
        assert diff == [], f"{key} differs between the hash tier and the full pass for {diff}"
    assert list(tier["decode_error"]) == list(full["decode_error"])
    assert tier["ghist"].shape == full["ghist"].shape == (len(names), facts.GHIST_BINS)
    assert np.array_equal(tier["ghist"], full["ghist"])  # the same function on the same bytes
    bad = names.index("truncated.jpg")
    sums = tier["ghist"].sum(axis=1)
    assert sums[bad] == 0 and np.allclose(np.delete(sums, bad), 1.0, atol=1e-5)
    assert tier["decode_error"][bad] != "" and sum(e != "" for e in tier["decode_error"]) == 1
    # one picture as a DCT-scaled JPEG and as a box-reduced PNG: (nearly) the same hash
    big = tier["phash"][[names.index("big.jpg"), names.index("big.png")]]
    assert int(np.bitwise_count(big[0] ^ big[1])) <= 2
    assert len(set(tier["phash"].tolist())) >= len(names) - 1  # the other pictures differ (bad = 0)


def test_hash_tier_reuses_the_full_pass_and_its_own_cache(tmp_path, monkeypatch):
    view = build_view(tmp_path, _items()[:4])
    full = view.facts
    assert view.hashes["phash"] is full["phash"]  # same view: the facts at hand
    # a fresh view, only the full pass cached: its hashes are read, nothing is decoded
    monkeypatch.setattr(facts, "compute_hashes", lambda *a, **k: pytest.fail("recomputed hashes"))
    again = ProjectView(view.store, "p").hashes
    assert np.array_equal(again["phash"], full["phash"]) and np.array_equal(again["dhash"], full["dhash"])


def test_hash_tier_is_cached_by_content(tmp_path, monkeypatch):
    view = build_view(tmp_path, _items()[:3])
    first = view.hashes
    assert len(FactTable(view.store.home, facts.HASHES_TABLE).read()) == 3
    monkeypatch.setattr(facts, "compute_hashes", lambda *a, **k: pytest.fail("recomputed hashes"))
    second = ProjectView(view.store, "p").hashes
    assert np.array_equal(first["phash"], second["phash"]) and np.array_equal(first["dhash"], second["dhash"])


def test_phash_is_the_orthonormal_dct():
    from scipy.fft import dctn

    g = np.random.default_rng(0).uniform(0, 255, size=(32, 32)).astype(np.float32)
    coeffs = dctn(g.astype(np.float64), norm="ortho")[:8, :8]
    assert facts.phash(g) == facts._bits_to_int64(coeffs > np.median(coeffs))


def test_lazy_embedding_is_the_full_pass_embedding(tmp_path):
    view = build_view(tmp_path, _items()[:5])
    lazy = view.embeddings_of(np.arange(len(view)))
    full = ProjectView(view.store, "p").embeddings
    np.testing.assert_allclose(lazy, full, atol=1e-6)
