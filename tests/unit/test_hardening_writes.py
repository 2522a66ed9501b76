"""Issue 16: user-facing commands write only where asked; caches are listed and clearable."""
import pytest

from bench.cli import build_parser, main


@pytest.mark.parametrize("argv", [["train", "intent"], ["train", "reranker"], ["train", "faithfulness"],
                                  ["report", "readme"]])
def test_no_default_output_inside_the_repository(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "intent"], ["train", "faithfulness"], ["train", "reranker"]])
def test_existing_model_folder_needs_force(tmp_path, argv, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.json").write_text("{}")
    assert main(argv + ["--out", str(out)]) == 2
    assert "not empty; pass --force" in capsys.readouterr().err
    assert (out / "model.json").read_text() == "{}"


def test_context_rot_stores_orders_only_when_asked():
    args = build_parser().parse_args(["diagnose", "context-rot"])
    assert args.orders is None
    args = build_parser().parse_args(["bench", "context"])
    assert args.orders is None


def test_cache_clear_removes_every_listed_entry_and_nothing_else(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    (root / "embeddings").mkdir(parents=True)
    (root / "embeddings" / "a.npy").write_bytes(b"x" * 10)
    (root / "onnx").mkdir()
    (root / "text_embeddings.sqlite").write_bytes(b"y")
    (root / "context_rot.sqlite-wal").write_bytes(b"z")
    (root / "mine.txt").write_text("not ours")
    ev = tmp_path / "eval-cache"
    ev.mkdir()
    monkeypatch.setenv("RAGFIX_CACHE", str(root))
    assert main(["cache", "info"]) == 0
    assert str(root / "embeddings") in capsys.readouterr().out
    assert main(["cache", "clear", "--eval-cache", str(ev)]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["mine.txt"] and not ev.exists()
    assert "5 cache entries removed" in capsys.readouterr().out
