"""Training curves as a PNG, drawn with Pillow (no plotting library needed).

``plot_curves(records, path)`` draws one panel per quantity present in the
per-epoch records of ``train_log.jsonl``: training loss, learning rate and,
when the run evaluated, validation top-1 / top-5.
"""
import math

from PIL import Image, ImageDraw, ImageFont

from .model_utils.files import replace_when_done

__all__ = ["plot_curves", "PANEL_SIZE"]

PANEL_SIZE = (420, 300)
_MARGIN = (58, 34, 16, 36)  # left, top, right, bottom
_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14))


def _ticks(low, high, count=5):
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-6:
        ticks.append(value)
        value += step
    if ticks[-1] < high - step * 1e-6:  # the axis must reach the largest value
        ticks.append(ticks[-1] + step)
    return ticks


def _fmt(value):
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _panel(title, xs, series, font):
    img = Image.new("RGB", PANEL_SIZE, "white")
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = _MARGIN
    width, height = PANEL_SIZE[0] - left - right, PANEL_SIZE[1] - top - bottom
    values = [v for _, ys in series for v in ys if v is not None and math.isfinite(v)]
    if not values or not xs:
        draw.text((left, top), f"{title}: no data", fill="black", font=font)
        return img
    y_ticks = _ticks(min(values), max(values))
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_high = x_low + 1

    def to_px(x, y):
        return (left + (x - x_low) / (x_high - x_low) * width,
                top + height - (y - y_low) / ((y_high - y_low) or 1.0) * height)

    draw.text((left, 8), title, fill="black", font=font)
    for tick in y_ticks:
        _, y = to_px(x_low, tick)
        draw.line([(left, y), (left + width, y)], fill=(225, 225, 225))
        draw.text((4, y - 6), _fmt(tick), fill="black", font=font)
    for tick in _ticks(x_low, x_high):
        if x_low <= tick <= x_high:
            x, _ = to_px(tick, y_low)
            draw.line([(x, top + height), (x, top + height + 4)], fill="black")
            draw.text((x - 6, top + height + 6), _fmt(tick), fill="black", font=font)
    draw.rectangle([left, top, left + width, top + height], outline="black")
    draw.text((left + width - 40, top + height + 20), "epoch", fill="black", font=font)
    for index, (label, ys) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        points = [to_px(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        if len(series) > 1:
            draw.text((left + 8 + 90 * index, top + 4), label, fill=colour, font=font)
    return img


def plot_curves(records, path):
    """Draw the curves of per-epoch ``records`` (dicts with ``epoch``, ``loss``, ``lr_last`` and
    optionally ``val_top1``/``val_top5``) into the PNG ``path``; returns the image size."""
    font = ImageFont.load_default()
    xs = [r["epoch"] for r in records]
    panels = [_panel("training loss", xs, [("loss", [r.get("loss") for r in records])], font),
              _panel("learning rate (end of epoch)", xs, [("lr", [r.get("lr_last") for r in records])], font)]
    if any("val_top1" in r for r in records):
        val = [r for r in records if "val_top1" in r]
        panels.append(_panel("validation accuracy", [r["epoch"] for r in val],
                             [("top-1", [r["val_top1"] for r in val]), ("top-5", [r.get("val_top5") for r in val])],
                             font))
    canvas = Image.new("RGB", (PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]), "white")
    for index, panel in enumerate(panels):
        canvas.paste(panel, (PANEL_SIZE[0] * index, 0))
    with replace_when_done(path, f"{path}.tmp.png") as tmp:
        canvas.save(tmp)
    return canvas.size
