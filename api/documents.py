"""Documents for people: the inspection report (PDF, reportlab) and compliance charts
(matplotlib, headless). Both need a CJK font; a system one is used when installed (Debian:
fonts-wqy-microhei or fonts-noto-cjk), else reportlab's built-in STSong-Light for the PDF."""

from __future__ import annotations

import io
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
    for index, item in enumerate(sorted(view["items"], key=lambda i: i["section"]), start=1):
        label = item.get("label") or {}
        text = f"{item['key']} {label.get('zh', '')} / {label.get('en', '')}"
        thumbs = [
            Image(io.BytesIO(images[a.id]), width=22 * mm, height=22 * mm, kind="proportional")
            for a in item["evidence"]
            if a.id in images
        ]
        rows.append(
            [
                Paragraph(_esc(text), body),
                Paragraph(_esc(_answer(item["answer"])), body),
                Paragraph("" if item["item_score"] is None else f"{item['item_score']:g}", body),
                thumbs[:3] or "",
            ]
        )
        if item["failed"]:
            styles.append(("BACKGROUND", (0, index), (-1, index), colors.HexColor("#fde2e1")))
    story.append(Paragraph("Answers 检查结果 (failed items highlighted 红色为不合格项)", sub))
    story.append(_table(rows, [80 * mm, 35 * mm, 15 * mm, 50 * mm], font, styles))
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


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _table(rows: list, widths: list, font: str, extra: list | None = None) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table(rows, colWidths=widths, repeatRows=1)
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


def compliance_chart(
    rows: list[dict[str, Any]], group_by: list[str], fmt: str, names: dict[str, str]
) -> bytes:
    """Pass rate and average score over time per group, as PNG or SVG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    path = cjk_font_file()
    family = ["DejaVu Sans"]
    if path:
        font_manager.fontManager.addfont(path)
        family = [font_manager.FontProperties(fname=path).get_name(), "DejaVu Sans"]
    time_key = next((g for g in group_by if g in ("day", "week", "month")), None)
    series_keys = [g for g in group_by if g != time_key]
    with plt.rc_context({"font.family": family, "axes.unicode_minus": False}):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
        series: dict[str, list[tuple[str, Any, Any]]] = {}
        for row in rows:
            label = (
                " / ".join(names.get(str(row.get(k)), str(row.get(k))) for k in series_keys)
                or "全部 All"
            )
            x = row.get(time_key) if time_key else "period"
            series.setdefault(label, []).append((x, row.get("pass_rate"), row.get("average_score")))
        for label, points in sorted(series.items()):
            points.sort(key=lambda p: str(p[0]))
            xs = [str(p[0]) for p in points]
            ax1.plot(
                xs, [None if p[1] is None else 100 * p[1] for p in points], marker="o", label=label
            )
            ax2.plot(xs, [p[2] for p in points], marker="s", label=label)
        ax1.set_title("合格率 Pass rate (%)")
        ax2.set_title("平均得分 Average score (%)")
        for ax in (ax1, ax2):
            ax.set_ylim(0, 105)
            ax.grid(alpha=0.3)
        ax2.set_xlabel(
            {"day": "日 Day", "week": "周 Week", "month": "月 Month"}.get(
                time_key or "", "期间 Period"
            )
        )
        if series:
            ax1.legend(fontsize=8, loc="lower left")
        fig.suptitle("合规汇总 Compliance summary")
        fig.autofmt_xdate()
        out = io.BytesIO()
        fig.savefig(out, format=fmt, dpi=110)
        plt.close(fig)
    return out.getvalue()
