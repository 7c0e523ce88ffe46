"""Chart geometry and number formats, without a browser."""
from __future__ import annotations

from decimal import Decimal

from exchange_server.pages.charts import (BarItem, LineItem, bar_chart, compact_money, line_chart, money,
                                          nice_ceiling, percent)
from exchange_server.pages.services import cycle_label, short_area_name


def test_money_formats_are_exact_and_readable() -> None:
    assert money(Decimal("2288387313.17")) == "2,288,387,313.17"
    assert money(Decimal("0.00")) == "0.00"
    assert compact_money(Decimal("2288387313.17")) == "22.88亿"
    assert compact_money(Decimal("169459740.65")) == "1.69亿"
    assert compact_money(Decimal("68918287.70")) == "6,891.83万"
    assert compact_money(Decimal("812")) == "812.00"
    assert percent(Decimal("4.15")) == "+4.15%" and percent(Decimal("-1.5")) == "-1.50%" and percent(None) == "—"


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 1.2, 2.2, 4, 7, 2288387313.17)] == [1, 1, 1, 2, 2.5, 5, 10, 2.5e9]


def test_bar_chart_scales_to_the_largest_value() -> None:
    chart = bar_chart([BarItem("11", "北京", "北京市 Beijing", Decimal("50")),
                       BarItem("42", "湖北", "湖北省 Hubei", Decimal("100")),
                       BarItem("44", "广东", "广东省 Guangdong", Decimal("-3"))],
                      width=300, label_width=60, value_width=40, row_height=20)
    assert chart.plot_width == 200 and chart.height == 60
    assert [(b.key, b.y, b.width) for b in chart.bars] == [("11", 0, 100.0), ("42", 20, 200.0), ("44", 40, 0.0)]
    assert bar_chart([]).bars == [] and bar_chart([]).height > 0


def test_line_chart_skips_cycles_without_data() -> None:
    items = [LineItem("202607", "2026-07", Decimal("10"), True), LineItem("202608", "2026-08", Decimal("0"), False),
             LineItem("202609", "2026-09", Decimal("25"), True), LineItem("202610", "2026-10", Decimal("50"), True,
                                                                          current=True)]
    chart = line_chart(items, width=400, height=200, left=50, top=10, bottom=20, right=10)
    assert [p.x for p in chart.points] == [50, 163.3, 276.7, 390]
    assert chart.points[3].y == 10 and chart.points[3].current  # 50 is the axis maximum: top of the plot
    assert chart.points[2].y == 95  # half way
    assert len(chart.segments) == 1 and chart.segments[0].count(",") == 2  # only 202609-202610 are joined
    assert chart.ticks[0].y == 180 and [t.text for t in chart.ticks] == ["0", "12.50", "25", "37.50", "50"]


def test_labels() -> None:
    assert [short_area_name(n) for n in ("北京市", "内蒙古自治区", "新疆维吾尔自治区", "广西壮族自治区", "湖北省")] == [
        "北京", "内蒙古", "新疆", "广西", "湖北"]
    assert cycle_label("202610") == "2026-10" and cycle_label("2026Q3") == "2026Q3"
