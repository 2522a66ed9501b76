"""Issue 16: training resume loads no pickle and resumes only the run the work folder was made for."""
import json

import pytest
import torch

from bench.cli import main
from bench.report import check_work_manifest
from rerank.train import load_checkpoint_state


class _Boom:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_state_file_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"opt": _Boom(marker), "sched": {}, "step": 1, "total": 2, "torch_rng": torch.get_rng_state()},
               tmp_path / "state.pt")
    with pytest.raises(ValueError, match="state.pt: not a plain training state"):
        load_checkpoint_state(tmp_path / "state.pt")
    assert not marker.exists()


def test_real_training_state_round_trips(tmp_path):
    p = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(p.parameters(), lr=1e-3)
    p(torch.ones(2, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = {"opt": opt.state_dict(), "sched": sched.state_dict(), "step": 7, "total": 9, "torch_rng": torch.get_rng_state()}
    torch.save(state, tmp_path / "state.pt")
    back = load_checkpoint_state(tmp_path / "state.pt")
    assert back["step"] == 7 and torch.equal(back["torch_rng"], state["torch_rng"])
    opt.load_state_dict(back["opt"])


def test_manifest_refuses_other_settings_or_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text("a\n")
    work = tmp_path / "work"
    check_work_manifest(work, {"seed": 13, "data": str(data)}, [data])
    check_work_manifest(work, {"seed": 13, "data": str(data)}, [data])  # same run: resumes
    with pytest.raises(ValueError, match="seed: 13 then, 14 now"):
        check_work_manifest(work, {"seed": 14, "data": str(data)}, [data])
    other = tmp_path / "other"
    other.mkdir()
    (other / "corpus.jsonl").write_text("b\n")
    with pytest.raises(ValueError, match="belongs to another run"):
        check_work_manifest(work, {"seed": 13, "data": str(other)}, [other])
    (data / "corpus.jsonl").write_text("changed\n")
    with pytest.raises(ValueError, match="data: "):
        check_work_manifest(work, {"seed": 13, "data": str(data)}, [data])


def test_train_reranker_refuses_a_work_folder_it_cannot_check(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "pairs.jsonl").write_text(json.dumps({"qid": "q", "query": "a", "passage": "b", "label": 1,
                                                  "source": "x"}) + "\n")
    assert main(["train", "reranker", "--work", str(work), "--out", str(tmp_path / "out"),
                 "--data", str(tmp_path)]) == 2
    assert "without manifest.json" in capsys.readouterr().err
