"""The StyleGAN2-ADA objective: non-saturating logistic loss with lazy R1 and path-length terms.

Phases, as in the reference: ``Gmain`` (G fools D), ``Greg`` (path-length regularisation on half
the batch), ``Dmain`` (D separates real from fake), ``Dreg`` (R1 on reals). The training loop runs
the ``reg`` phases every few minibatches and passes ``gain`` = that interval, which keeps their
expected contribution the same as if they ran every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


class StyleGAN2Loss:
    """Accumulates the gradients of one phase into G or D and returns the scalars to log.

    Args:
        G, D: the generator and discriminator being trained.
        augment_pipe: applied to every image D sees (real and fake), or None for no augmentation.
        ada: an ADA controller that observes sign(D(real)) in the Dmain and Dreg passes, or None.
        r1_gamma: R1 weight gamma; the penalty is gamma/2 * ||grad_x D(x)||^2.
        style_mixing_prob: probability that a minibatch mixes two latents at a random layer.
        pl_weight, pl_batch_shrink, pl_decay: path-length weight, batch divisor and EMA decay.
    """

    def __init__(
        self,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: torch.nn.Module | None = None,
        ada: object | None = None,
        r1_gamma: float = 10.0,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
    ) -> None:
        self.G, self.D = G, D
        self.augment_pipe, self.ada = augment_pipe, ada
        self.r1_gamma, self.style_mixing_prob = r1_gamma, style_mixing_prob
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = pl_weight, pl_batch_shrink, pl_decay
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)

    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images, mixing in a second latent after a random layer with `style_mixing_prob`."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mixed = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mixed, cutoff, num_ws)
            layer = torch.arange(num_ws, device=ws.device)[None, :, None]
            ws = torch.where(layer < cutoff, ws, self.G.mapping(torch.randn_like(z), c, update_emas=False))
        return self.G.synthesis(ws, update_emas=update_emas), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(
        self,
        phase: str,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Backpropagate `phase`'s loss times `gain`; returns detached scalars for logging."""
        stats: dict[str, torch.Tensor] = {}
        if phase == "Gmain":  # G: maximise D's logits for fakes.
            gen_img, _ = self.run_G(gen_z, gen_c)
            loss_G = F.softplus(-self.run_D(gen_img, gen_c)).mean()
            loss_G.mul(gain).backward()
            stats["loss_G"] = loss_G.detach()
        elif phase == "Greg":  # Path length: |J_w^T y| should stay near its running mean.
            if self.pl_weight == 0:
                return stats
            batch = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch], gen_c[:batch])
            pl_noise = torch.randn_like(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])
            (pl_grads,) = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True)
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            loss_pl = (pl_penalty * self.pl_weight).mean()
            (gen_img[:, 0, 0, 0] * 0 + loss_pl).mean().mul(gain).backward()
            stats.update(loss_G_pl=loss_pl.detach(), pl_penalty=pl_penalty.mean().detach())
        elif phase == "Dmain":  # D: minimise logits for fakes, maximise them for reals.
            gen_img, _ = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c)
            loss_fake = F.softplus(gen_logits).mean()
            loss_fake.mul(gain).backward()
            real_logits = self.run_D(real_img.detach(), real_c)
            if self.ada is not None:
                self.ada.observe(real_logits.detach())
            loss_real = F.softplus(-real_logits).mean()
            loss_real.mul(gain).backward()
            stats.update(loss_D=(loss_fake + loss_real).detach(), D_real=real_logits.detach().mean(),
                         D_fake=gen_logits.detach().mean(), real_sign=real_logits.detach().sign().mean())
        elif phase == "Dreg":  # R1: penalise D's gradient on real images.
            if self.r1_gamma == 0:
                return stats
            real_img_tmp = real_img.detach().requires_grad_(True)
            real_logits = self.run_D(real_img_tmp, real_c)
            if self.ada is not None:  # the reference's ADA statistic counts the R1 pass's reals too
                self.ada.observe(real_logits.detach())
            (r1_grads,) = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp], create_graph=True)
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            loss_r1 = (r1_penalty * (self.r1_gamma / 2)).mean()
            (real_logits * 0 + loss_r1).mean().mul(gain).backward()
            stats.update(loss_D_r1=loss_r1.detach(), r1_penalty=r1_penalty.mean().detach())
        else:
            raise ValueError(f"unknown loss phase {phase!r}; expected one of {', '.join(PHASES)}")
        return stats

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pl_mean.copy_(state["pl_mean"])
