"""The landmark model: adjacency, output shapes for every switch, covariances, checkpoints."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError, load_model, read_meta, save_weights, stem_paths
from core.config import ConfigError, ModelConfig
from core.graph import neighbourhood
from core.models import LandmarkModel, build_model, cholesky_to_cov
from core.models.backbones import MOBILENET_V2_FILE, MobileNetV2, build_backbone, find_mobilenet_weights
from core.models.scc import DynamicAdjacency, GraphHead, binary_adjacency

from conftest import TINY_CONFIG, synthetic_shapes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph_inputs():
    s = synthetic_shapes(32)
    return torch.as_tensor(neighbourhood(s, 3)), torch.as_tensor(s.mean(0))


def _model(graph_inputs, **kw) -> LandmarkModel:
    torch.manual_seed(0)
    nb, mean = graph_inputs
    if "k" in kw:
        nb = torch.as_tensor(neighbourhood(synthetic_shapes(32), kw["k"]))
    return build_model(ModelConfig(**{**TINY_CONFIG, **kw}), nb, mean)


# ---------------------------------------------------------------- adjacency
def test_dynamic_adjacency_rows_sum_to_one_and_zero_outside_mask(graph_inputs):
    mask = graph_inputs[0]
    torch.manual_seed(0)
    adj = DynamicAdjacency(16, mask)
    for p in adj.fc.parameters():  # non-uniform weights (the zero init would give uniform rows)
        torch.nn.init.normal_(p, std=1.0)
    a = adj(torch.randn(3, 16, 2, 2) * 3)
    assert a.shape == (3, 68, 68)
    assert torch.allclose(a.sum(-1), torch.ones(3, 68), atol=1e-5)
    assert torch.all(a[:, mask == 0] == 0)  # exactly zero off the neighbourhood
    assert torch.all(a[:, mask > 0] > 0)
    assert not torch.allclose(a, binary_adjacency(mask).expand(3, -1, -1), atol=1e-3)  # really per image
    assert not torch.allclose(a[0], a[1], atol=1e-4)


def test_dynamic_adjacency_starts_uniform(graph_inputs):
    mask = graph_inputs[0]
    a = DynamicAdjacency(16, mask)(torch.randn(2, 16, 2, 2))
    assert torch.allclose(a, binary_adjacency(mask).expand(2, -1, -1), atol=1e-6)


def test_binary_adjacency(graph_inputs):
    mask = graph_inputs[0]
    a = binary_adjacency(mask)
    assert torch.allclose(a.sum(-1), torch.ones(68))
    assert torch.all(a[mask > 0] == 0.25) and torch.all(a[mask == 0] == 0)


def test_model_adjacency_output_respects_mask(graph_inputs):
    m = _model(graph_inputs).eval()
    torch.nn.init.normal_(m.adjacency.fc[2].weight, std=0.5)
    with torch.no_grad():
        a = m(torch.rand(2, 3, 64, 64))["adjacency"]
    assert torch.allclose(a.sum(-1), torch.ones(2, 68), atol=1e-5)
    assert torch.all(a[:, m.neighbours == 0] == 0)


# ---------------------------------------------------------------- shapes for every switch
SWITCHES = [dict(head=h, adjacency=a, fusion=f, uncertainty=u)
            for h, a, f, u in itertools.product(("graph", "fc"), ("dynamic", "binary"), (True, False), (True, False))]


@pytest.mark.parametrize("sw", SWITCHES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_output_shapes_every_switch(graph_inputs, sw):
    m = _model(graph_inputs, **sw).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, 64, 64))
    assert out["coords"].shape == (2, 68, 2)
    assert out["adjacency"].shape == (2, 68, 68)
    assert torch.isfinite(out["coords"]).all()
    assert ("cov" in out) == sw["uncertainty"]
    if sw["uncertainty"]:
        assert out["cov"].shape == (2, 68, 2, 2)
    # a fresh model starts at the mean shape (the last layer is initialised near zero)
    assert torch.allclose(out["coords"], m.mean_shape.expand(2, -1, -1), atol=0.05)
    assert hasattr(m, "adjacency") == (sw["head"] == "graph" and sw["adjacency"] == "dynamic")


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18", "resnet34"])
def test_output_shapes_every_backbone(graph_inputs, backbone):
    m = _model(graph_inputs, backbone=backbone)
    m.train()
    out = m(torch.rand(2, 3, 64, 64))
    assert out["coords"].shape == (2, 68, 2) and out["cov"].shape == (2, 68, 2, 2)
    out["coords"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.parametrize("backbone, channels", [("mobilenet_v2", (32, 96, 1280)), ("resnet18", (128, 256, 512)),
                                                ("resnet34", (128, 256, 512))])
def test_backbone_strides(backbone, channels):
    net = build_backbone(backbone).eval()
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 64, 64))
    assert tuple(f.shape[1] for f in feats) == channels == tuple(net.out_channels)
    assert [f.shape[-1] for f in feats] == [8, 4, 2]  # strides 8, 16, 32


def test_input_size_128_and_other_k(graph_inputs):
    m = _model(graph_inputs, input_size=128, k=5).eval()
    assert torch.all(m.neighbours.sum(1) == 6)
    with torch.no_grad():
        assert m(torch.rand(1, 3, 128, 128))["coords"].shape == (1, 68, 2)


def test_a_graph_head_hears_only_nodes_with_a_path_to_it(graph_inputs):
    """The sparse directed graph: node i's output moves with node j's features iff a path leads j -> i."""
    nb = graph_inputs[0]
    n = nb.shape[0]
    reach = (nb > 0).float()  # reach[i, j]: a path from j into i (self-loops included)
    for _ in range(7):  # paths of up to 2**7 > n edges
        reach = (reach @ reach).clamp(max=1.0)
    i, j = next((a, b) for a in range(n) for b in range(n) if reach[a, b] == 0)
    k = int(torch.nonzero(nb[i] > 0)[-1])  # a neighbour of i
    torch.manual_seed(0)
    head = GraphHead(8, 16, 2, n, 2).eval()
    x = torch.randn(1, n, 8)
    adj = binary_adjacency(nb)[None]
    with torch.no_grad():
        for src, heard in ((j, False), (k, True)):
            y = x.clone()
            y[0, src] += 5.0
            assert (not torch.allclose(head(x, adj)[0, i], head(y, adj)[0, i])) == heard


def test_build_rejects_wrong_graph_shapes(graph_inputs):
    nb, mean = graph_inputs
    with pytest.raises(ValueError, match="neighbours"):
        build_model(ModelConfig(**TINY_CONFIG), nb[:10, :10], mean)
    with pytest.raises(ValueError, match="mean_shape"):
        build_model(ModelConfig(**TINY_CONFIG), nb, mean[:10])


# ---------------------------------------------------------------- covariance
def test_covariance_symmetric_positive_definite(graph_inputs):
    m = _model(graph_inputs).eval()
    torch.nn.init.normal_(m.head.out.weight, std=0.5)  # make the covariances non-trivial
    with torch.no_grad():
        cov = m(torch.rand(3, 3, 64, 64))["cov"].double()
    assert torch.allclose(cov, cov.transpose(-1, -2))
    assert torch.all(torch.linalg.eigvalsh(cov) > 0)
    assert torch.all(torch.isfinite(torch.linalg.cholesky(cov)))


def test_cholesky_to_cov_known_values():
    cov = cholesky_to_cov(torch.tensor([[0.0, 2.0, 0.0]]))  # L = [[1, 0], [2, 1]]
    assert torch.allclose(cov, torch.tensor([[[1.0, 2.0], [2.0, 5.0]]]))
    extreme = cholesky_to_cov(torch.tensor([[-50.0, 0.0, -50.0], [50.0, 100.0, 50.0]]))  # clamped
    assert torch.all(torch.linalg.eigvalsh(extreme.double()) > 0) and torch.isfinite(extreme).all()


def test_initial_sigma(graph_inputs):
    m = _model(graph_inputs).eval()
    with torch.no_grad():
        cov = m(torch.rand(1, 3, 64, 64))["cov"]
    assert torch.allclose(cov[..., 0, 0].sqrt(), torch.full((1, 68), 0.02), rtol=0.1)


# ---------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tmp_path, graph_inputs):
    m = _model(graph_inputs, head="fc", uncertainty=False).eval()
    save_weights(tmp_path / "m", m, {"train_data": "synthetic"})
    loaded, meta = load_model(tmp_path / "m.safetensors")
    assert meta["train_data"] == "synthetic" and meta["model"]["head"] == "fc"
    assert not loaded.training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x)["coords"], loaded(x)["coords"])


def test_tiny_fixtures_load(tiny_weights, tiny_fc_weights):
    g, _ = load_model(tiny_weights)
    f, _ = load_model(tiny_fc_weights)
    assert g.cfg.head == "graph" and f.cfg.head == "fc" and g.cfg.input_size == 64


def _swap_meta(src, dst, tmp_path):
    """A checkpoint with the tensors of `src` and the metadata of `dst`."""
    st, _ = stem_paths(src)
    _, js = stem_paths(dst)
    out = tmp_path / "mixed"
    out.with_suffix(".safetensors").write_bytes(st.read_bytes())
    out.with_suffix(".json").write_text(js.read_text())
    return out.with_suffix(".safetensors")


@pytest.mark.parametrize("other", [dict(channels=16), dict(head="fc"), dict(backbone="resnet18"),
                                   dict(uncertainty=False), dict(graph_blocks=3)])
def test_load_model_of_another_shape_raises(tmp_path, graph_inputs, other):
    a = _model(graph_inputs)
    b = _model(graph_inputs, **other)
    save_weights(tmp_path / "a", a)
    save_weights(tmp_path / "b", b)
    # pairs saved since issue 17 carry a save_id: the mix is refused as a mismatched pair
    with pytest.raises(CheckpointError, match="another shape|mismatched checkpoint pair") as e:
        load_model(_swap_meta(tmp_path / "a", tmp_path / "b", tmp_path))
    assert "mixed" in str(e.value)  # names the file


def test_load_model_with_another_landmark_count_raises(tmp_path, graph_inputs):
    a = _model(graph_inputs)
    save_weights(tmp_path / "a", a)
    meta = read_meta(tmp_path / "a")
    meta["model"]["num_landmarks"] = 20
    meta["num_landmarks"] = 20
    (tmp_path / "a.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"another shape.*\(20,20\).*\(68, 68\)"):
        load_model(tmp_path / "a.safetensors")


def test_load_model_missing_and_corrupt(tmp_path, graph_inputs):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "none.safetensors")
    save_weights(tmp_path / "a", _model(graph_inputs))
    (tmp_path / "a.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(tmp_path / "a.safetensors")
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_model(tmp_path / "a")
    (tmp_path / "a.json").write_text(json.dumps({"format": 1, "model": {"backbone": "vgg"}}))
    with pytest.raises(CheckpointError, match="incompatible model config"):
        load_model(tmp_path / "a")


# ---------------------------------------------------------------- ImageNet init
def test_mobilenet_loads_imagenet_strictly():
    path = find_mobilenet_weights()
    if path is None:
        pytest.skip(f"{MOBILENET_V2_FILE} not installed")
    net = MobileNetV2()
    before = net.features[0][0].weight.clone()
    assert net.load_imagenet() == path  # load_state_dict(strict=True) inside
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(net.state_dict()) == {k for k in state if not k.startswith("classifier.")}
    assert torch.equal(net.features[0][0].weight, state["features.0.0.weight"])
    assert not torch.equal(before, net.features[0][0].weight)
    # and the model builder uses it when pretrained
    pre = build_backbone("mobilenet_v2", pretrained=True)
    assert torch.equal(pre.features[18][0].weight, state["features.18.0.weight"])


def test_mobilenet_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError, match=MOBILENET_V2_FILE):
        MobileNetV2().load_imagenet(tmp_path / "nothing.pth")


# ------------------------------------------------------------------------------ the FC baseline
def test_fc_head_cannot_die():
    """However far the first layer's pre-activations drift below zero (what happened to the first FC-stage
    baseline: 0 of 256 units fired, so its output was a constant), the LayerNorm keeps half of the hidden
    units firing and the output depends on the input."""
    from core.models.scc import FCHead

    torch.manual_seed(0)
    head = FCHead(in_dim=40, hidden=64, num_nodes=68, out_dim=5, node_dim=8)
    with torch.no_grad():
        head.body[0].bias.fill_(-1e3)
    nodes = torch.randn(4, 68, 40)
    hidden = head.body[:3](head.project(nodes).flatten(1))
    assert (hidden > 0).float().mean(1).min() > 0.25
    out = head(nodes)
    assert out.shape == (4, 68, 5) and (out[0] - out[1]).abs().max() > 0


def test_fc_baseline_at_the_flagship_size_stays_a_small_file():
    """The FC stages on the flagship's nodes (68 x 676 and 68 x 546 features) project each node first, so
    the baseline's weights stay far under the repository's 25 MB per file (dense layers on the flattened
    nodes held 47 M parameters, 188 MB)."""
    from core.config import load_config

    cfg = load_config(ROOT / "configs" / "sdfl_flagship_fc.yaml").model
    shapes = synthetic_shapes(32)
    model = build_model(cfg, neighbourhood(shapes, cfg.k), shapes.mean(0))
    assert cfg.stage_head == "fc" and sum(p.numel() for p in model.parameters()) * 4 < 20 * 2**20


def test_fc_node_dim_must_be_positive():
    with pytest.raises(ConfigError, match="fc_node_dim"):
        ModelConfig(fc_node_dim=0).validate()
