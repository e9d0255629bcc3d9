"""StyleGAN2-ADA networks: exact parameter counts, every config builds and runs, the mapping /
truncation / noise / conditioning behaviour, safe rebuilding from init_kwargs, and freezing."""

from __future__ import annotations

import json

import pytest
import torch

from stylegan2ada import networks
from stylegan2ada.configs import CONFIG_NAMES
from stylegan2ada.networks import Discriminator, Generator, build_module, build_networks

TINY = {"channel_base": 512, "channel_max": 32, "mapping_layers": 2}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _inputs(G: Generator, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    c = torch.eye(G.c_dim)[torch.arange(n) % G.c_dim] if G.c_dim else torch.zeros(n, 0)
    return z, c


@pytest.mark.parametrize(
    ("channels", "g_params", "d_params"), [(1, 23_186_516, 24_000_961), (3, 23_191_522, 24_001_089)]
)
def test_parameter_counts_match_reference(channels: int, g_params: int, d_params: int) -> None:
    G, D = build_networks("auto", 256, channels, seed=0)
    assert _count(G) == g_params
    assert _count(G.mapping) == 525_312
    assert _count(D) == d_params
    assert (G.z_dim, G.w_dim, G.num_ws, G.img_resolution, G.img_channels) == (512, 512, 14, 256, channels)


@pytest.mark.parametrize("cfg", CONFIG_NAMES)
def test_every_config_builds_and_runs(cfg: str) -> None:
    G, D = build_networks(cfg, 8, 3, c_dim=2, seed=1)
    z, c = _inputs(G, 2)
    img = G(z, c)
    logits = D(img, c)
    assert img.shape == (2, 3, 8, 8) and logits.shape == (2, 1)
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()
    assert D.init_kwargs["architecture"] == ("orig" if cfg == "cifar" else "resnet")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("c_dim", [0, 3])
def test_forward_backward_at_32px(channels: int, c_dim: int) -> None:
    G, D = build_networks("auto", 32, channels, c_dim=c_dim, seed=2, **TINY)
    z, c = _inputs(G, 4)
    img = G(z, c)
    assert img.shape == (4, channels, 32, 32) and img.dtype == torch.float32
    logits = D(img, c)
    assert logits.shape == (4, 1)
    torch.nn.functional.softplus(-logits).mean().backward()
    for name, param in [*G.named_parameters(), *D.named_parameters()]:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    # D's projection makes the logit depend on the label.
    if c_dim:
        assert not torch.allclose(D(img.detach(), c), D(img.detach(), c.roll(1, dims=1)))


def test_r1_and_path_length_need_gradients_of_gradients() -> None:
    G, D = build_networks("auto", 16, 1, seed=3, **TINY)
    real = torch.randn(4, 1, 16, 16, requires_grad=True)
    (r1_grad,) = torch.autograd.grad(D(real, None).sum(), real, create_graph=True)
    r1_grad.square().sum().backward()
    for name, param in D.named_parameters():
        if name != "b4.out.bias":  # the output bias does not change d(logit)/d(image)
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert D.b16.conv0.weight.grad.abs().sum() > 0

    ws = G.mapping(*_inputs(G, 2))
    img = G.synthesis(ws)
    (pl_grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    pl_grad.square().sum(2).mean(1).sqrt().mean().backward()
    conv_weight = G.synthesis.b16.conv0.weight
    assert conv_weight.grad is not None and conv_weight.grad.abs().sum() > 0


def test_mapping_normalises_z_and_labels() -> None:
    G, _ = build_networks("auto", 8, 1, c_dim=2, seed=4, **TINY)
    z, c = _inputs(G, 3)
    ws = G.mapping(z, c)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    torch.testing.assert_close(G.mapping(z * 7.0, c * 3.0), ws)
    assert (ws == ws[:, :1]).all()  # one w broadcast to every layer
    with pytest.raises(ValueError, match="c must have shape"):
        G.mapping(z, torch.zeros(3, 5))


def test_w_avg_tracks_only_when_asked() -> None:
    G, _ = build_networks("auto", 8, 1, seed=5, **TINY)
    z, c = _inputs(G, 6)
    before = G.mapping.w_avg.clone()
    ws = G.mapping(z, c)
    torch.testing.assert_close(G.mapping.w_avg, before)
    G.mapping(z, c, update_emas=True)
    torch.testing.assert_close(G.mapping.w_avg, before + (ws[:, 0].mean(0) - before) * (1 - 0.995))


def test_truncation_psi_and_cutoff() -> None:
    G, _ = build_networks("auto", 16, 1, seed=6, **TINY)
    z, c = _inputs(G, 4)
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    w_avg = G.mapping.w_avg
    full = G.mapping(z, c)
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0), w_avg.expand_as(full))
    half = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], w_avg + 0.5 * (full[:, :2] - w_avg))
    torch.testing.assert_close(half[:, 2:], full[:, 2:])
    img_psi0 = G(z, c, truncation_psi=0, noise_mode="const")
    assert torch.allclose(img_psi0, img_psi0[:1].expand_as(img_psi0), atol=1e-6)


def test_noise_modes() -> None:
    G, _ = build_networks("auto", 16, 1, seed=7, **TINY)
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.5)
    ws = G.mapping(*_inputs(G, 2))
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(const_a, const_b)
    none = G.synthesis(ws, noise_mode="none")
    random_a, random_b = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert not torch.allclose(random_a, random_b)
    assert not torch.allclose(const_a, none)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_noise_strength_starts_at_zero_so_modes_agree_at_init() -> None:
    G, _ = build_networks("auto", 16, 3, seed=8, **TINY)
    strengths = [p for n, p in G.named_parameters() if n.endswith("noise_strength")]
    assert len(strengths) == 2 * 3 - 1 and all(float(s.detach()) == 0 for s in strengths)
    ws = G.mapping(*_inputs(G, 2))
    torch.testing.assert_close(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="none"))


def test_fused_inference_path_equals_training_path() -> None:
    G, _ = build_networks("auto", 16, 3, seed=9, **TINY)
    z, c = _inputs(G, 3)
    G.train()
    trained = G(z, c, noise_mode="const")
    G.eval()
    torch.testing.assert_close(G(z, c, noise_mode="const"), trained, rtol=1e-4, atol=1e-5)


def test_same_seed_same_networks_and_outputs() -> None:
    state = torch.random.get_rng_state()
    G1, D1 = build_networks("auto", 16, 1, c_dim=2, seed=10, **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    G2, D2 = build_networks("auto", 16, 1, c_dim=2, seed=10, **TINY)
    G3, _ = build_networks("auto", 16, 1, c_dim=2, seed=11, **TINY)
    for a, b in [(G1, G2), (D1, D2)]:
        for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(ta, tb), name
    assert not torch.equal(G1.synthesis.b4.const, G3.synthesis.b4.const)
    z, c = _inputs(G1, 2)
    torch.manual_seed(0)
    out1 = G1(z, c)
    torch.manual_seed(0)
    torch.testing.assert_close(G2(z, c), out1, rtol=0, atol=0)


def test_build_module_round_trip() -> None:
    G, D = build_networks("auto", 16, 3, c_dim=2, seed=12, num_fp16_res=2, conv_clamp=256, **TINY)
    for net in (G, D):
        kwargs = json.loads(json.dumps(net.init_kwargs))
        rebuilt = build_module(type(net).__name__, kwargs)
        assert type(rebuilt) is type(net) and rebuilt.init_kwargs == net.init_kwargs
        rebuilt.load_state_dict(net.state_dict())
        assert _count(rebuilt) == _count(net)
    G_again = build_module("Generator", G.init_kwargs)
    G_again.load_state_dict(G.state_dict())
    z, c = _inputs(G, 2)
    torch.testing.assert_close(G_again(z, c, noise_mode="const"), G(z, c, noise_mode="const"))
    with pytest.raises(ValueError, match="only Generator, Discriminator"):
        build_module("os.system", {})


def test_fp16_request_stays_fp32_on_cpu() -> None:
    G, D = build_networks("auto", 32, 1, seed=13, num_fp16_res=2, conv_clamp=256, **TINY)
    assert [G.synthesis.b32.use_fp16, G.synthesis.b16.use_fp16, G.synthesis.b8.use_fp16] == [
        True,
        True,
        False,
    ]
    z, c = _inputs(G, 4)
    img = G(z, c)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert D(img, c).dtype == torch.float32


def _check_fp16_pair(device: str) -> None:
    G, D = build_networks("auto", 16, 3, c_dim=2, seed=16, num_fp16_res=4, conv_clamp=256, **TINY)
    G, D = G.to(device), D.to(device)
    z, c = (t.to(device) for t in _inputs(G, 4))
    img = G(z, c, noise_mode="const")
    reference = G(z, c, noise_mode="const", force_fp32=True)
    assert img.dtype == torch.float32
    torch.testing.assert_close(img, reference, rtol=0, atol=0.05 * float(reference.detach().abs().max()))
    real = img.detach().requires_grad_(True)
    logits = D(real, c)
    assert logits.dtype == torch.float32
    (r1_grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    (r1_grad.square().sum() + torch.nn.functional.softplus(D(img, c)).mean()).backward()
    grads = [p.grad for p in [*G.parameters(), *D.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_fp16_code_path_is_dtype_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force FP16 blocks on CPU (normally CUDA only) to check every cast on that path."""

    def fp16_anywhere(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
        return torch.float16 if use_fp16 and not force_fp32 else torch.float32

    monkeypatch.setattr(networks, "_block_dtype", fp16_anywhere)
    _check_fp16_pair("cpu")


@pytest.mark.gpu
def test_fp16_on_cuda() -> None:
    _check_fp16_pair("cuda")


def test_freeze_first_layers_of_d() -> None:
    _, D = build_networks("auto", 16, 1, seed=14, **TINY)
    names = [name for name, _ in D.freezable_layers()]
    assert names == ["b16.fromrgb", "b16.conv0", "b16.conv1", "b16.skip", "b8.conv0", "b8.conv1", "b8.skip"]
    D.freeze_first(4)
    D(torch.randn(4, 1, 16, 16), None).sum().backward()
    for name, layer in D.freezable_layers():
        grads = [p.grad for p in layer.parameters()]
        assert all(g is None for g in grads) == name.startswith("b16."), name
    assert D.b4.fc.weight.grad is not None
    rebuilt = build_module("Discriminator", D.init_kwargs)
    assert [p.requires_grad for p in rebuilt.parameters()] == [p.requires_grad for p in D.parameters()]
    with pytest.raises(ValueError, match="freeze"):
        D.freeze_first(8)


def test_bad_inputs_get_clear_errors() -> None:
    G, D = build_networks("auto", 16, 3, c_dim=2, seed=15, **TINY)
    _, c = _inputs(G, 3)
    with pytest.raises(ValueError, match="img must have shape"):
        D(torch.zeros(3, 1, 16, 16), c)
    with pytest.raises(ValueError, match="minibatch stddev"):
        D(torch.zeros(6, 3, 16, 16), torch.zeros(6, 2))
    with pytest.raises(ValueError, match="conditional"):
        D(torch.zeros(3, 3, 16, 16), None)
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.zeros(3, 2, 512))
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(c_dim=0, img_resolution=24, img_channels=1)
    with pytest.raises(TypeError, match="JSON"):
        Generator(512, 0, 512, 8, 1, synthesis_kwargs={"channel_base": torch.tensor(4)})
