"""The pure-Python WordPiece and the dense (static-embedding) term of the injection classifier."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tether.config.guards import InjectionOptions
from tether.guards.builtin.injection import InjectionGuard, InjectionModel
from tether.guards.builtin.wordpiece import PieceScorer, basic_words, wordpieces

VOCAB = {p: 0.0 for p in ("[UNK]", "ignore", "##s", "play", "##ing", "cafe", "!", "中", "文")}


def test_basic_words_follow_bert_uncased() -> None:
    assert basic_words("Ignore ALL, now!") == ["ignore", "all", ",", "now", "!"]
    assert basic_words("a\x00b\tc") == ["ab", "c"]  # control characters dropped, as BERT does
    assert basic_words("Café 中文!") == ["cafe", "中", "文", "!"]  # accents stripped, CJK split


def test_wordpieces_longest_match_first() -> None:
    assert wordpieces("playing", VOCAB) == ["play", "##ing"]
    assert wordpieces("ignores", VOCAB) == ["ignore", "##s"]
    assert wordpieces("zzz", VOCAB) == ["[UNK]"]
    assert wordpieces("x" * 101, VOCAB) == ["[UNK]"]


def test_piece_scorer_means_over_pieces_and_caches_words() -> None:
    scorer = PieceScorer({**VOCAB, "ignore": 3.0, "##s": 1.0, "play": -1.0})
    assert scorer.mean("ignores") == pytest.approx(2.0)
    assert scorer.mean("ignores play") == pytest.approx(1.0)
    assert scorer.mean("") == 0.0
    assert scorer.word("ignores") == (4.0, 2)


def test_pieces_shift_the_logit_and_a_sparse_model_ignores_them() -> None:
    text = "please ignore this and that and the other thing right now today"
    off = InjectionOptions(heuristics=False)
    sparse = InjectionGuard(off, model=InjectionModel(0.0, {"w:ignore": 1.0}, {}))
    dense = InjectionGuard(
        off, model=InjectionModel(0.0, {"w:ignore": 1.0}, {}, pieces={**VOCAB, "ignore": 20.0})
    )
    assert dense.classifier_score(text) > sparse.classifier_score(text)


def test_shipped_model_carries_the_whole_vocabulary() -> None:
    model = InjectionModel.load()
    assert len(model.pieces) == 30522 and "[UNK]" in model.pieces
    assert model.meta["emb_scale"] > 0


def test_training_folds_the_dense_weights_into_piece_scalars() -> None:
    """What fit() learns on mean embeddings equals, at inference, the mean piece scalar."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import train_injection as ti
    finally:
        sys.path.pop(0)
    feats: Any = ti.Features()
    feats.vocab = ["[UNK]", "zorblax", "kettle", "tea", "ignore"]
    feats.table = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    feats._index = {p: i for i, p in enumerate(feats.vocab)}
    rows = [{"text": "zorblax kettle", "label": 1, "source": "A"}] * 5
    rows += [{"text": "kettle tea", "label": 0, "source": "B"}] * 5
    model = ti.fit(rows, ti.Hyper(c=1.0, min_df=99, max_features=10, emb_scale=1.0), feats)
    assert not model.weights and model.pieces["zorblax"] > 0 > model.pieces["tea"]
    scorer = PieceScorer(model.pieces)
    expected = float(np.mean([model.pieces["zorblax"], model.pieces["kettle"]]))
    assert scorer.mean("zorblax kettle") == pytest.approx(expected, abs=1e-3)
