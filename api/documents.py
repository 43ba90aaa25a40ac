"""Documents for people: the inspection report (PDF, reportlab) and compliance charts
(matplotlib, headless). Both need a CJK font; a system one is used when installed (Debian:
fonts-wqy-microhei or fonts-noto-cjk), else reportlab's built-in STSong-Light for the PDF."""

from __future__ import annotations

import io
import textwrap
import threading
from functools import cache
from pathlib import Path
from typing import Any

from store.types import from_epoch_ms

CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


@cache
def cjk_font_file() -> str | None:
    """The first CJK-capable font file on this machine."""
    return next((p for p in CJK_FONT_FILES if Path(p).exists()), None)


@cache
def _pdf_font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    path = cjk_font_file()
    if path:
        pdfmetrics.registerFont(TTFont("CJK", path, subfontIndex=0))
        return "CJK"
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light"


def _ms(value: int | None) -> str:
    if value is None:
        return "—"
    return from_epoch_ms(value).strftime("%Y-%m-%d %H:%M UTC")


def inspection_pdf(view: dict[str, Any], images: dict[str, bytes]) -> bytes:
    """The inspection report: header, answers by section (failed items highlighted), photo
    thumbnails beside their items, signatures and corrective actions."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer

    font = _pdf_font()
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=12)
    head = ParagraphStyle("head", fontName=font, fontSize=15, leading=19, spaceAfter=6)
    sub = ParagraphStyle("sub", fontName=font, fontSize=11, leading=14, spaceBefore=8, spaceAfter=4)
    insp, site, tpl = view["inspection"], view["site"], view["template"]
    inspector = view.get("inspector")
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Inspection {insp.id}",
    )
    story: list[Any] = []
    title = f"{tpl.title_zh} / {tpl.title_en}" if tpl else "Inspection"
    story.append(Paragraph(_esc(title), head))
    verdict = "PASS 合格" if insp.passed else "FAIL 不合格"
    facts = [
        ("Site 场所", f"{site.name} ({site.code})" if site else insp.site_id),
        ("Area 区域", insp.area or "—"),
        ("Template 模板", f"{tpl.template_key} v{tpl.version}" if tpl else insp.template_id),
        ("Inspector 检查员", inspector.name if inspector else (insp.inspector_id or "—")),
        ("Started 开始", _ms(insp.started_at)),
        ("Completed 完成", _ms(insp.completed_at)),
        (
            "Score 得分",
            f"{insp.score or 0:g} / {insp.max_score or 0:g} "
            f"({insp.score_percent if insp.score_percent is not None else '—'}%)",
        ),
        ("Grade 等级", insp.grade or "—"),
        (
            "Result 结论",
            verdict + (" · critical failure 关键项不合格" if insp.critical_failed else ""),
        ),
        ("Status 状态", f"{insp.status} / {insp.review_state or '—'}"),
    ]
    story.append(
        _table(
            [[Paragraph(_esc(k), body), Paragraph(_esc(str(v)), body)] for k, v in facts],
            [45 * mm, 135 * mm],
            font,
        )
    )
    rows: list[list[Any]] = [
        [Paragraph(h, body) for h in ("Item 项目", "Answer 回答", "Score 得分", "Evidence 照片")]
    ]
    styles: list[tuple] = []
    long_answers: list[tuple[str, str]] = []
    for index, item in enumerate(sorted(view["items"], key=lambda i: i["section"]), start=1):
        label = item.get("label") or {}
        text = f"{item['key']} {label.get('zh', '')} / {label.get('en', '')}"
        thumbs = [
            Image(io.BytesIO(images[a.id]), width=22 * mm, height=22 * mm, kind="proportional")
            for a in item["evidence"]
            if a.id in images
        ]
        shown = _answer(item["answer"])
        if len(shown) > LONG_ANSWER:
            long_answers.append((text, shown))
        rows.append(
            [
                Paragraph(_esc(text), body),
                Paragraph(_esc(_cell_answer(shown, len(long_answers))), body),
                Paragraph("" if item["item_score"] is None else f"{item['item_score']:g}", body),
                thumbs[:3] or "",
            ]
        )
        if item["failed"]:
            styles.append(("BACKGROUND", (0, index), (-1, index), colors.HexColor("#fde2e1")))
    story.append(Paragraph("Answers 检查结果 (failed items highlighted 红色为不合格项)", sub))
    story.append(_table(rows, [80 * mm, 35 * mm, 15 * mm, 50 * mm], font, styles))
    if long_answers:
        story.append(Paragraph("Full answers 完整回答", sub))
        for ref, (text, shown) in enumerate(long_answers, start=1):
            story.append(Paragraph(_esc(f"[{ref}] {text}"), sub))
            story.append(Paragraph(_esc(shown), body))
    sigs = view.get("signatures") or []
    if sigs:
        story.append(Paragraph("Signatures 签名", sub))
        for sig in sigs:
            line = f"{sig.signer_name or '—'} ({sig.signer_role or '—'}) {_ms(sig.signed_at)}"
            if sig.signature_stale:
                line += " — STALE: answers changed after signing 签名后内容已修改"
            story.append(Paragraph(_esc(line), body))
            if sig.id in images:
                story.append(
                    Image(
                        io.BytesIO(images[sig.id]),
                        width=60 * mm,
                        height=20 * mm,
                        kind="proportional",
                    )
                )
    actions = view.get("actions") or []
    if actions:
        story.append(Paragraph("Corrective actions 整改项", sub))
        story.append(
            _table(
                [
                    [
                        Paragraph(h, body)
                        for h in ("Action 整改", "Priority 优先级", "Due 期限", "Status 状态")
                    ]
                ]
                + [
                    [Paragraph(_esc(a.title), body), a.priority, _ms(a.due_at), a.status]
                    for a in actions
                ],
                [90 * mm, 25 * mm, 40 * mm, 25 * mm],
                font,
            )
        )
    story.append(Spacer(1, 6 * mm))
    doc.build(story)
    return out.getvalue()


def _answer(value: Any) -> str:
    return "—" if value is None else str(value)


LONG_ANSWER = 600
"""Answers longer than this are shortened in their (narrow) table cell and printed in full,
across the page width, after the table."""


def _cell_answer(text: str, ref: int) -> str:
    if len(text) <= LONG_ANSWER:
        return text
    return f"{text[: LONG_ANSWER // 2]} … [{ref}: full text below 全文见下]"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table(rows: list, widths: list, font: str, extra: list | None = None) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    # splitInRow: a row taller than a page (a long answer, label or title) is split across
    # pages instead of raising LayoutError.
    table = Table(rows, colWidths=widths, repeatRows=1, splitInRow=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), font),
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                *(extra or []),
            ]
        )
    )
    return table


CHART_MAX_GROUPS = 10
"""Lines a compliance chart draws at most (one per colour of matplotlib's default palette):
the busiest groups (most inspections completed in the period; ties by label), the rest folded
into one grey, dashed "others" line."""

_CHART_FONT_LOCK = threading.Lock()


@cache
def _chart_font_family() -> tuple[str, ...]:
    """The chart font families, the CJK font registered with matplotlib once per process
    (addfont() grows the process-wide font list and clears findfont's cache on every call)."""
    from matplotlib import font_manager

    path = cjk_font_file()
    if not path:
        return ("DejaVu Sans",)
    with _CHART_FONT_LOCK:
        manager = font_manager.fontManager
        if not any(f.fname == path for f in manager.ttflist):
            manager.addfont(path)
    return (font_manager.FontProperties(fname=path).get_name(), "DejaVu Sans")


def _chart_series(
    rows: list[dict[str, Any]], series_keys: list[str], time_key: str | None, names: dict
) -> tuple[dict[str, list[tuple[str, Any, Any]]], int, int]:
    """Label -> points (x, pass rate, average score) of at most CHART_MAX_GROUPS groups plus
    an "others" line; also the number of groups and of those folded."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = (
            " / ".join(names.get(str(row.get(k)), str(row.get(k))) for k in series_keys)
            or "全部 All"
        )
        by_group.setdefault(label, []).append(row)
    ranked = sorted(by_group, key=lambda lab: (-sum(_weight(r) for r in by_group[lab]), lab))
    kept, rest = sorted(ranked[:CHART_MAX_GROUPS]), ranked[CHART_MAX_GROUPS:]

    def x_of(row: dict[str, Any]) -> str:
        return str(row.get(time_key)) if time_key else "period"

    series = {
        label: [(x_of(r), r.get("pass_rate"), r.get("average_score")) for r in by_group[label]]
        for label in kept
    }
    if rest:
        periods: dict[str, list[dict[str, Any]]] = {}
        for label in rest:
            for r in by_group[label]:
                periods.setdefault(x_of(r), []).append(r)
        others = f"其他 Others ({len(rest)} 组 groups)"
        while others in series:  # a group really named so
            others += " "
        series[others] = [
            (x, _mean(group, "pass_rate"), _mean(group, "average_score"))
            for x, group in periods.items()
        ]
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return series, len(by_group), len(rest)


def _legend_label(label: str) -> str:
    """A label as drawn in the legend beside the chart: wrapped to lines of 30 characters, at
    most three (a longer name ends in "…"; the full names are in the report's table/CSV)."""
    lines = textwrap.wrap(
        label, LEGEND_LABEL_WIDTH, max_lines=3, placeholder=" …", break_on_hyphens=False
    )
    return "\n".join(lines) or label


LEGEND_LABEL_WIDTH = 30


def _weight(row: dict[str, Any]) -> int:
    """How many inspections a row stands for (1 when a row does not say)."""
    n = row.get("inspections_completed", 1)
    return n if isinstance(n, int) else 0


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    """The inspection-weighted mean of a rate over rows (None when no row has one)."""
    pairs = [(r[key], _weight(r)) for r in rows if r.get(key) is not None and _weight(r) > 0]
    total = sum(w for _v, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def compliance_chart(
    rows: list[dict[str, Any]], group_by: list[str], fmt: str, names: dict[str, str]
) -> bytes:
    """Pass rate and average score over time per group, as PNG or SVG.

    At most CHART_MAX_GROUPS groups are drawn (the rest as one "others" line; the title says
    so). Labels are drawn literally: no mathtext for `$`, and a leading `_` is kept. The figure
    is built without pyplot and without touching the global rcParams (fonts and text options
    are passed to each text), so nothing outlives the request and threads do not interfere."""
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    family = list(_chart_font_family())

    def font(size: float) -> FontProperties:
        return FontProperties(family=family, size=size)

    text = {"parse_math": False}
    time_key = next((g for g in group_by if g in ("day", "week", "month")), None)
    series_keys = [g for g in group_by if g != time_key]
    series, groups, folded = _chart_series(rows, series_keys, time_key, names)

    fig = Figure(figsize=(9, 6.5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    handles = []
    for index, points in enumerate(series.values()):
        xs = [p[0] for p in points]
        style: dict[str, Any] = (
            {"color": "#8c8c8c", "linestyle": "--"} if folded and index == len(series) - 1 else {}
        )
        pass_pct = [None if p[1] is None else 100 * p[1] for p in points]
        (line,) = ax1.plot(xs, pass_pct, marker="o", **style)
        ax2.plot(xs, [p[2] for p in points], marker="s", **style)
        handles.append(line)
    ax1.set_title("合格率 Pass rate (%)", fontproperties=font(12), **text)
    ax2.set_title("平均得分 Average score (%)", fontproperties=font(12), **text)
    for ax in (ax1, ax2):
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        # Tick labels are numbers and periods (ASCII, never negative): the default font will do.
    ax2.set_xlabel(
        {"day": "日 Day", "week": "周 Week", "month": "月 Month"}.get(
            time_key or "", "期间 Period"
        ),
        fontproperties=font(10),
        **text,
    )
    if handles:
        # matplotlib drops legend labels that start with "_": label with placeholders, then
        # set the real text on the legend's own Text objects.
        legend = ax1.legend(
            handles,
            [f"g{i}" for i in range(len(handles))],
            prop=font(8),
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
        fig.subplots_adjust(right=0.74, top=0.87 if folded else None)
        for item, label in zip(legend.get_texts(), series, strict=True):
            item.set_text(_legend_label(label))
            item.set_parse_math(False)
    title = "合规汇总 Compliance summary"
    if folded:
        shown = groups - folded
        title += f"\n前 {shown} 组（共 {groups} 组）· top {shown} of {groups} groups by inspections"
    fig.suptitle(title, fontproperties=font(12), **text)
    fig.autofmt_xdate()
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=110)
    return out.getvalue()
