"""Data augmentation: every training image slightly redrawn, differently each time it is seen.

A network that sees each of 55,000 digits 100 times can learn them by heart; one that sees a new
variant each time must learn what a digit's shape is. The variants are the ones handwriting itself
makes: a digit a little rotated, larger or smaller, slanted (sheared), off centre (an affine
transform), and with its strokes wobbled locally (an elastic distortion: a random displacement
field, smoothed so that neighbouring pixels move together; Simard et al. 2003, section 2).

The whole batch is transformed at once on the training device: one sampling grid per image (the
affine map plus the smoothed displacements) and one `grid_sample` call, so that each image is
resampled once, not once per transform. The random draws come from a generator the data module
owns and saves in checkpoints, so that a run and its resumed copy draw the same distortions, and
each DDP process draws its own for its own images. (kornia.augmentation also transforms batches
per image, but draws from the global random state, which neither a checkpoint nor the processes of
a run keep apart.)
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat
from torch import Tensor


@dataclass(frozen=True)
class Distortion:
    """How far each training image may be moved, each bound the largest of a uniform draw; all 0 (the
    default): not at all.

    Args:
        rotation: degrees, either way.
        scale: relative size change, either way (0.1: from 90% to 110%).
        shear: degrees of slant, either way.
        translation: shift as a share of the image's width and height, either way.
        elastic_alpha: strength of the elastic distortion, in pixels (Simard: 34); 0 for none.
        elastic_sigma: smoothness of its displacement field: the Gaussian's width, in pixels (Simard: 4).
    """

    rotation: NonNegativeFloat = 0.0
    scale: NonNegativeFloat = 0.0
    shear: NonNegativeFloat = 0.0
    translation: NonNegativeFloat = 0.0
    elastic_alpha: NonNegativeFloat = 0.0
    elastic_sigma: NonNegativeFloat = 4.0

    def __bool__(self) -> bool:
        return any((self.rotation, self.scale, self.shear, self.translation, self.elastic_alpha))

    def __call__(self, images: Tensor, background: float, generator: torch.Generator) -> Tensor:
        """Distorted copies of a batch (N, C, H, W); `background` fills what comes in from outside."""
        n, _, height, width = images.shape
        grid = F.affine_grid(self._affine(n, generator, images), list(images.shape), align_corners=False)
        if self.elastic_alpha:
            grid = grid + self._displacements(n, height, width, generator, images)
        shifted = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return shifted + background

    def _affine(self, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
        """Per image, the map (N, 2, 3) from each output pixel to where it is read in the input: the
        inverse of rotating, slanting and scaling the digit and then shifting it."""
        draws = torch.rand(n, 5, generator=generator, device=like.device, dtype=like.dtype) * 2 - 1
        angle = draws[:, 0] * math.radians(self.rotation)
        slant = torch.tan(draws[:, 1] * math.radians(self.shear))
        size = 1 + draws[:, 2] * self.scale
        shift = draws[:, 3:] * 2 * self.translation  # normalized coordinates span 2 per image width
        cos, sin = torch.cos(angle), torch.sin(angle)
        # inverse(rotate @ shear @ scale) = scale^-1 @ shear^-1 @ rotate^-1
        unrotate = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        unshear = torch.eye(2, device=like.device, dtype=like.dtype).repeat(n, 1, 1)
        unshear[:, 0, 1] = -slant
        inverse = (unshear @ unrotate) / size[:, None, None]
        return torch.cat([inverse, -(inverse @ shift[:, :, None])], dim=2)

    def _displacements(self, n: int, height: int, width: int, generator: torch.Generator, like: Tensor) -> Tensor:
        """Smoothed random displacements (N, H, W, 2) in the grid's normalized coordinates."""
        noise = torch.rand(n, 2, height, width, generator=generator, device=like.device, dtype=like.dtype) * 2 - 1
        field = (
            gaussian_rows(height, self.elastic_sigma, like) @ noise @ gaussian_rows(width, self.elastic_sigma, like).T
        )
        pixel = torch.tensor([2 / width, 2 / height], device=like.device, dtype=like.dtype)
        return field.permute(0, 2, 3, 1) * self.elastic_alpha * pixel


NO_DISTORTION = Distortion()


def gaussian_rows(size: int, sigma: float, like: Tensor) -> Tensor:
    """The matrix (size, size) that blurs a column of `size` values with a normalized Gaussian of width `sigma`,
    reflecting at the edges: blurring an image is then two small matrix products, one per axis, which
    costs a fraction of a convolution with a kernel as wide as the image."""
    radius = min(math.ceil(3 * sigma), size - 1)  # (reflection cannot reach further than the image)
    offsets = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    weights = torch.exp(-(offsets**2) / (2 * max(sigma, 1e-6) ** 2))
    basis = F.pad(torch.eye(size, device=like.device, dtype=like.dtype)[:, None], (radius, radius), mode="reflect")
    return F.conv1d(basis, (weights / weights.sum()).view(1, 1, -1))[:, 0].T
