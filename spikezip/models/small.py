"""A small CNN for 28x28 (MNIST) and 8x8 (scikit-learn digits) images."""

from __future__ import annotations

from torch import Tensor, nn

from spikezip.models.widths import scaled


class SmallCNN(nn.Module):
    """conv-BN-ReLU-maxpool x2, then a ReLU hidden layer and a linear classifier.

    Input ``[B, in_channels, image_size, image_size]`` (image_size divisible by 4),
    output ``[B, num_classes]``.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, width: float = 1.0
    ):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"SmallCNN needs image_size divisible by 4, got {image_size}")
        c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(128, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * (image_size // 4) ** 2, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def small_cnn(
    num_classes: int = 10, in_channels: int = 1, image_size: int = 28, width: float = 1.0
) -> SmallCNN:
    """The small CNN used by the embedded MNIST-5k demo."""
    return SmallCNN(num_classes, in_channels, image_size, width)
