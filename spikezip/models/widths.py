"""Channel-width scaling shared by the model builders."""


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1; tests build narrow nets with width < 1."""
    if not width > 0:
        raise ValueError(f"width multiplier must be positive, got {width!r}")
    return max(1, round(channels * width))
