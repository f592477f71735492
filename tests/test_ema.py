"""The weight average (`ema_decay`, core.ema): the update rule, what validation and best.* hold, and
that --resume continues the average exactly."""
from __future__ import annotations

import pytest
import torch
from train_runs import all_tensors, cfg_dict, killed_after_epoch, max_diff, write_cfg

from core.checkpoint import TRAIN_STATE_PREFIX, load_model, read_meta
from core.config import TrainConfig, from_dict
from core.ema import WeightAverage
from core.metrics import nme
from core.train import Trainer, main, predict_dataset

DECAY = 0.8


def test_update_is_the_exponential_average_and_integer_buffers_are_copied():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(net, DECAY)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net.train()
    net(torch.randn(8, 3))  # moves the running statistics and num_batches_tracked (an integer buffer)
    ema.update(net)
    assert torch.allclose(ema.shadow["0.weight"], DECAY * w0 + (1 - DECAY) * (w0 + 1.0))
    assert int(ema.shadow["1.num_batches_tracked"]) == 1
    assert torch.allclose(ema.shadow["1.running_mean"], (1 - DECAY) * net[1].running_mean)


def test_applied_swaps_in_the_average_and_restores_the_raw_weights():
    net = torch.nn.Linear(3, 2)
    ema = WeightAverage(net, DECAY)
    with torch.no_grad():
        net.weight.mul_(3.0)
    raw = net.weight.detach().clone()
    ema.update(net)
    with ema.applied(net):
        assert torch.allclose(net.weight, ema.shadow["weight"]) and not torch.allclose(net.weight, raw)
    assert torch.equal(net.weight, raw)


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_decay_outside_zero_one_is_refused(tmp_path, train_root, capsys, decay):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, ema_decay=decay))
    assert main(["--config", cfg, "--out", str(tmp_path / "run")]) == 2
    assert "ema_decay must be in [0, 1)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, train_root):
    tmp = tmp_path_factory.mktemp("ema")
    cfg = write_cfg(tmp / "cfg.yaml", cfg_dict(train_root, ema_decay=DECAY))
    assert main(["--config", cfg, "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def test_best_holds_the_validated_average_and_last_keeps_both(ema_run, train_root):
    last = all_tensors(ema_run)
    avg = {k[len(TRAIN_STATE_PREFIX) + 4:]: v for k, v in last.items() if k.startswith(TRAIN_STATE_PREFIX + "ema.")}
    raw = {k: v for k, v in last.items() if not k.startswith(TRAIN_STATE_PREFIX)}
    assert set(avg) == set(raw) and max_diff(avg, raw) > 1e-4  # the average is not the raw weights
    hist = read_meta(ema_run / "last")["history"]
    best = min(hist, key=lambda h: h["val_nme"])
    assert best["val_nme"] != best["val_nme_raw"]
    model, meta = load_model(ema_run / "best.safetensors")
    assert meta["epoch"] == best["epoch"]
    val_ds = Trainer(from_dict(TrainConfig, cfg_dict(train_root, ema_decay=DECAY)), ema_run.parent / "unused").val_ds
    pred, gt = predict_dataset(model, val_ds, torch.device("cpu"))
    assert float(nme(pred, gt).mean()) == pytest.approx(best["val_nme"], abs=1e-6)  # the average's figure


def test_resume_continues_the_average(tmp_path, train_root, ema_run, monkeypatch):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, ema_decay=DECAY))
    out = tmp_path / "run"
    killed_after_epoch(monkeypatch, cfg, out, epoch=2)
    assert main(["--config", cfg, "--out", str(out), "--resume"]) == 0
    a, b = all_tensors(ema_run), all_tensors(out)
    assert any(k.startswith(TRAIN_STATE_PREFIX + "ema.") for k in a)
    assert max_diff(a, b) <= 1e-5
    ha, hb = read_meta(ema_run / "last")["history"], read_meta(out / "last")["history"]
    assert [h["val_nme"] for h in ha] == pytest.approx([h["val_nme"] for h in hb], abs=1e-6)


def test_the_average_of_a_stopped_run_can_be_saved_as_a_model(ema_run, tmp_path, capsys):
    """python -m core.ema <last> --out <stem>: the stored average as a loadable model checkpoint."""
    from core.ema import main as ema_main

    assert ema_main([str(ema_run / "last.safetensors"), "--out", str(tmp_path / "avg")]) == 0
    model, meta = load_model(tmp_path / "avg")
    last = all_tensors(ema_run)
    avg = {k: last[TRAIN_STATE_PREFIX + "ema." + k] for k in model.state_dict()}
    assert max_diff({k: v for k, v in model.state_dict().items()}, avg) == 0.0
    assert meta["epoch"] == 3 and "weight average" in meta["weights"]
    assert ema_main([str(tmp_path / "avg.safetensors"), "--out", str(tmp_path / "again")]) == 2
    assert "holds no weight average" in capsys.readouterr().err


def test_a_soup_is_the_mean_of_its_checkpoints_and_refuses_another_architecture(ema_run, tmp_path, capsys):
    """python -m core.ema --soup A B --out S: every float tensor the mean of A's and B's, integer buffers
    A's; the ingredients listed in S's metadata; a different model is refused with a message."""
    import dataclasses

    from core.checkpoint import save_weights
    from core.ema import main as ema_main

    a, _ = load_model(ema_run / "best")
    b, meta_b = load_model(ema_run / "best")
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn_like(p))
    save_weights(tmp_path / "b.safetensors", b, meta_b)
    assert ema_main(["--soup", str(ema_run / "best.safetensors"), str(tmp_path / "b.safetensors"),
                     "--out", str(tmp_path / "soup")]) == 0
    soup, meta = load_model(tmp_path / "soup")
    sa, sb = a.state_dict(), b.state_dict()
    want = {k: (sa[k] + sb[k]) / 2 if sa[k].is_floating_point() else sa[k] for k in sa}
    assert max_diff(soup.state_dict(), want) <= 1e-6
    ingredients = [str(ema_run / "best.safetensors"), str(tmp_path / "b.safetensors")]
    assert [i["checkpoint"] for i in meta["soup"]] == ingredients
    assert "history" not in meta and meta["train_config"] == read_meta(ema_run / "best")["train_config"]

    other = dataclasses.replace(a.cfg, graph_hidden=a.cfg.graph_hidden * 2)
    from core.models import build_model

    c = build_model(other, a.neighbours.numpy(), a.mean_shape.numpy())
    save_weights(tmp_path / "c.safetensors", c, {"train_config": meta_b["train_config"]})
    assert ema_main(["--soup", str(ema_run / "best.safetensors"), str(tmp_path / "c.safetensors"),
                     "--out", str(tmp_path / "bad")]) == 2
    assert "another architecture" in capsys.readouterr().err


def test_a_weighted_soup_recovers_an_ingredient(ema_run, tmp_path, capsys):
    """--coefficients: theta = sum_k c_k theta_k; with S = (A + B) / 2, `--soup S A --coefficients 2 -1`
    gives B back. Coefficients that do not sum to 1, or are not one per checkpoint, are refused."""
    from core.checkpoint import save_weights
    from core.ema import main as ema_main

    b, meta_b = load_model(ema_run / "best")
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn_like(p))
    save_weights(tmp_path / "b.safetensors", b, meta_b)
    a_path, b_path = str(ema_run / "best.safetensors"), str(tmp_path / "b.safetensors")
    assert ema_main(["--soup", a_path, b_path, "--out", str(tmp_path / "s")]) == 0
    assert ema_main(["--soup", str(tmp_path / "s.safetensors"), a_path, "--coefficients", "2", "-1",
                     "--out", str(tmp_path / "b_again")]) == 0
    again, meta = load_model(tmp_path / "b_again")
    assert max_diff(again.state_dict(), b.state_dict()) <= 1e-5
    assert [i["coefficient"] for i in meta["soup"]] == [2.0, -1.0] and meta["weights"].startswith("weighted")
    for bad in (["1", "1"], ["1"]):
        assert ema_main(["--soup", a_path, b_path, "--coefficients", *bad, "--out", str(tmp_path / "x")]) == 2
        assert "summing to 1" in capsys.readouterr().err
