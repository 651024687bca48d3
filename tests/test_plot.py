"""Training curves PNG."""
from PIL import Image

from src.plot import PANEL_SIZE, _ticks, plot_curves


def test_axis_ticks_cover_the_data():
    for low, high in ((0.5, 2.21), (0.0, 0.004), (1.0, 1.0), (-3.0, 7.5)):
        ticks = _ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and ticks == sorted(ticks)


def test_curves_png_with_and_without_validation(tmp_path):
    records = [{"epoch": e, "loss": 2.0 / e, "lr_last": 0.1 * e} for e in range(1, 5)]
    assert plot_curves(records, str(tmp_path / "a.png")) == (2 * PANEL_SIZE[0], PANEL_SIZE[1])
    records[1].update(val_top1=0.5, val_top5=0.9)
    records[3].update(val_top1=0.7, val_top5=1.0)
    path = tmp_path / "b.png"
    assert plot_curves(records, str(path)) == (3 * PANEL_SIZE[0], PANEL_SIZE[1])
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (3 * PANEL_SIZE[0], PANEL_SIZE[1])
        # something was drawn in each panel (not a blank canvas)
        for k in range(3):
            panel = img.crop((k * PANEL_SIZE[0], 0, (k + 1) * PANEL_SIZE[0], PANEL_SIZE[1]))
            assert len(panel.getcolors(maxcolors=100000)) > 3
