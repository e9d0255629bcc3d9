"""The StyleGAN2-ADA loss phases: which network each one trains, and the values they compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylegan2ada.loss import StyleGAN2Loss
from stylegan2ada.networks import build_networks

pytestmark = pytest.mark.usefixtures("one_thread")


RES = 16


def _networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    G, D = build_networks("auto", RES, 1, channel_base=512, channel_max=32, mapping_layers=1, seed=0)
    return G.requires_grad_(False), D.requires_grad_(False)


class LinearD(torch.nn.Module):
    """D(x) = <w, x>: its input gradient is w, so R1 is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(1, 1, RES, RES))

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (img * self.w).sum([1, 2, 3])[:, None]


def _inputs(n: int = 4) -> tuple[torch.Tensor, ...]:
    return torch.rand(n, 1, RES, RES) * 2 - 1, torch.zeros(n, 0), torch.randn(n, 512), torch.zeros(n, 0)


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters() if p.grad is not None]


@pytest.mark.parametrize(("phase", "trained", "keys"), [
    ("Gmain", "G", {"loss_G"}),
    ("Greg", "G", {"loss_G_pl", "pl_penalty"}),
    ("Dmain", "D", {"loss_D", "D_real", "D_fake", "real_sign"}),
    ("Dreg", "D", {"loss_D_r1", "r1_penalty"}),
])
def test_each_phase_trains_only_its_network(phase: str, trained: str, keys: set[str]) -> None:
    torch.manual_seed(0)
    G, D = _networks()
    module = {"G": G, "D": D}[trained]
    module.requires_grad_(True)
    stats = StyleGAN2Loss(G, D, r1_gamma=1.0).accumulate_gradients(phase, *_inputs())
    assert set(stats) == keys and all(torch.isfinite(v) for v in stats.values())
    assert len(_grads(module)) > 0 and all(torch.isfinite(g).all() for g in _grads(module))
    assert _grads({"G": D, "D": G}[trained]) == []


def test_gain_scales_the_gradient() -> None:
    G, D = _networks()
    G.requires_grad_(True)
    grads = []
    for gain in (1.0, 3.0):
        G.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        StyleGAN2Loss(G, D).accumulate_gradients("Gmain", *_inputs(), gain=gain)
        grads.append(torch.cat([g.flatten() for g in _grads(G)]))
    torch.testing.assert_close(grads[1], 3 * grads[0])


def test_r1_matches_the_closed_form() -> None:
    G, _ = _networks()
    D = LinearD()
    gamma, gain = 0.5, 16
    stats = StyleGAN2Loss(G, D, r1_gamma=gamma).accumulate_gradients("Dreg", *_inputs(), gain=gain)
    penalty = D.w.detach().square().sum()
    torch.testing.assert_close(stats["r1_penalty"], penalty)
    torch.testing.assert_close(stats["loss_D_r1"], gamma / 2 * penalty)
    torch.testing.assert_close(D.w.grad, gain * gamma * D.w.detach())  # d/dw (gamma/2 |w|^2) * gain


def test_non_saturating_logistic_values() -> None:
    G, _ = _networks()
    D = LinearD()
    real_img, real_c, z, c = _inputs()
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0)
    torch.manual_seed(2)
    stats = loss.accumulate_gradients("Dmain", real_img, real_c, z, c)
    torch.manual_seed(2)
    with torch.no_grad():
        fake_logits = D(loss.run_G(z, c)[0], c)
        real_logits = D(real_img, real_c)
    expected = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    torch.testing.assert_close(stats["loss_D"], expected)
    assert stats["real_sign"] == real_logits.sign().mean()


def test_path_length_mean_moves_by_its_decay() -> None:
    G, D = _networks()
    G.requires_grad_(True)
    loss = StyleGAN2Loss(G, D, pl_decay=0.01)
    assert loss.pl_mean == 0
    loss.accumulate_gradients("Greg", *_inputs())
    first = loss.pl_mean.clone()
    assert first > 0
    state = loss.state_dict()
    loss.accumulate_gradients("Greg", *_inputs())
    assert loss.pl_mean != first
    loss.load_state_dict(state)
    assert loss.pl_mean == first


def test_style_mixing_swaps_the_last_layers() -> None:
    G, D = _networks()
    z, c = torch.randn(3, 512), torch.zeros(3, 0)
    plain = G.mapping(z, c)
    _, ws = StyleGAN2Loss(G, D, style_mixing_prob=1.0).run_G(z, c, update_emas=False)
    torch.testing.assert_close(ws[:, 0], plain[:, 0])  # cutoff >= 1: the first layer is never mixed
    assert not torch.allclose(ws[:, -1], plain[:, -1])  # cutoff < num_ws: the last layer always is
    _, unmixed = StyleGAN2Loss(G, D, style_mixing_prob=0.0).run_G(z, c, update_emas=False)
    torch.testing.assert_close(unmixed, plain)


def test_zero_weights_skip_regularisers_and_bad_phase_is_an_error() -> None:
    G, D = _networks()
    G.requires_grad_(True)
    D.requires_grad_(True)
    loss = StyleGAN2Loss(G, D, r1_gamma=0, pl_weight=0)
    assert loss.accumulate_gradients("Dreg", *_inputs()) == {}
    assert loss.accumulate_gradients("Greg", *_inputs()) == {}
    assert _grads(G) == [] and _grads(D) == []
    with pytest.raises(ValueError, match="Gboth"):
        loss.accumulate_gradients("Gboth", *_inputs())


def test_ada_statistic_counts_the_real_logits_of_the_main_and_the_r1_pass() -> None:
    """As the reference: E[sign(D(real))] is taken over the reals of Dmain and of the lazy R1 pass."""
    from stylegan2ada.augment import AdaController

    torch.manual_seed(0)
    G, _ = _networks()
    D = LinearD().requires_grad_(False)
    ada = AdaController(target=0.0)
    loss = StyleGAN2Loss(G, D, ada=ada, r1_gamma=1.0)
    real, real_c, z, c = _inputs(4)
    D.w.requires_grad_(True)
    loss.accumulate_gradients("Dmain", real, real_c, z, c)
    main_signs = torch.sign(D(real, real_c)).sum().item()
    assert ada.state_dict() == {"signs_sum": main_signs, "signs_count": 4.0}
    loss.accumulate_gradients("Dreg", -real, real_c, z, c)  # the R1 pass sees other reals: opposite signs
    assert ada.state_dict() == {"signs_sum": 0.0, "signs_count": 8.0}
