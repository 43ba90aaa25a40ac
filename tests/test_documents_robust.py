"""The inspection report PDF and the compliance charts against large and awkward input: long
answers and labels, `$` and `_` in names, many groups, and what a chart request leaves behind
in the process (fonts, figures)."""

from __future__ import annotations

import datetime as dt
import io
from types import SimpleNamespace
from typing import Any

import pytest
from matplotlib.figure import Figure
from pypdf import PdfReader

from api import documents
from api.documents import compliance_chart, inspection_pdf
from tests.conftest import ANA, HQ_EMAIL, NORTH
from tests.sync_env import answer, new_inspection

# A month around today: the inspections these tests complete are received now.
_TODAY = dt.datetime.now(dt.UTC).date()
PERIOD = (
    f"start={_TODAY - dt.timedelta(days=30)}T00:00:00Z"
    f"&end={_TODAY + dt.timedelta(days=2)}T00:00:00Z&group_by=site"
)


def _completed_with(device, env, **answers: Any) -> str:
    """A completed, synced inspection with the given extra answers (e.g. remark=...)."""
    phone = device(ANA, "robust-phone")
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    for key, value in answers.items():
        answer(phone, iid, key, value)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    assert phone.sync()["conflicts"] == []
    phone.sync()
    return iid


def _pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "".join(page.extract_text() for page in reader.pages)


# --- 1. the PDF report: any length of answer, label or action title renders -------------------


def test_pdf_report_renders_a_20000_character_answer(api, env, device):
    """A text answer as long as the sync accepts (20,000 characters of JSON) used to make one
    table row taller than an A4 page: reportlab raised LayoutError and the report was a 500.
    Now it renders, and the whole answer is in the document, not cut off."""
    marker = "END-OF-REMARK"
    remark = ("The sink was not cleaned properly. " * 600)[: 19_990 - len(marker)] + marker
    iid = _completed_with(device, env, remark=remark)
    resp = api.get(f"/inspections/{iid}/report.pdf", NORTH)
    assert resp.status_code == 200, resp.status_code
    assert resp.data.startswith(b"%PDF")
    pages, text = _pdf_text(resp.data)
    assert pages > 1
    assert marker in text, "the end of the long answer is in the report"


def test_pdf_report_renders_a_very_long_unbroken_word(api, env, device):
    """A 20,000-character answer without a single space (a pasted token, a URL, a keyboard
    held down) cannot be wrapped at spaces; it is broken inside the word and still renders."""
    iid = _completed_with(device, env, remark="W" * 19_990)
    resp = api.get(f"/inspections/{iid}/report.pdf", NORTH)
    assert resp.status_code == 200, resp.status_code
    pages, text = _pdf_text(resp.data)
    assert pages > 1
    assert "North Grand Hotel" in text


def _view(items: list[dict[str, Any]], actions: list[Any] | None = None) -> dict[str, Any]:
    """A minimal report view, shaped like review.detail()'s, for inspection_pdf()."""
    insp = SimpleNamespace(
        id="insp-1",
        passed=False,
        area="Kitchen",
        site_id="site-1",
        template_id="tpl-1",
        inspector_id="user-1",
        started_at=1_795_000_000_000,
        completed_at=1_795_000_600_000,
        score=1,
        max_score=2,
        score_percent=50,
        grade="C",
        critical_failed=False,
        status="completed",
        review_state=None,
    )
    site = SimpleNamespace(name="North Grand Hotel", code="N-HOTEL")
    tpl = SimpleNamespace(title_zh="测试", title_en="Probe", template_key="probe", version=1)
    return {
        "inspection": insp,
        "site": site,
        "template": tpl,
        "inspector": SimpleNamespace(name="Ana"),
        "items": items,
        "signatures": [],
        "actions": actions or [],
    }


def _item(key: str, label: str, value: Any, failed: bool = False) -> dict[str, Any]:
    return {
        "key": key,
        "section": "main",
        "label": {"zh": label, "en": label},
        "answer": value,
        "item_score": None,
        "failed": failed,
        "evidence": [],
    }


@pytest.mark.parametrize(
    "label",
    [
        "Check that every shelf of the walk-in cold room is labelled and dated. " * 200,
        "L" * 15_000,  # one unbroken word
        "冷库每层货架都必须贴好标签并注明日期。" * 500,
    ],
    ids=["words", "unbroken", "cjk"],
)
def test_pdf_report_renders_a_very_long_item_label(label):
    """Template item labels are drawn in the same table: a label taller than a page (in any
    script, with or without spaces) must render too, and a failed item stays highlighted."""
    view = _view([_item("shelves", label, "no", failed=True), _item("floor", "Floor", "yes")])
    data = inspection_pdf(view, {})
    pages, text = _pdf_text(data)
    assert pages > 1
    assert "Floor" in text


def test_pdf_report_renders_a_very_long_action_title():
    """Corrective action titles sit in a table too."""
    action = SimpleNamespace(
        title="Replace the door seal of the walk-in cold room. " * 400,
        priority="high",
        due_at=1_795_000_000_000,
        status="open",
    )
    data = inspection_pdf(_view([_item("floor", "Floor", "yes")], [action]), {})
    assert _pdf_text(data)[0] > 1


def test_pdf_report_lists_long_answers_in_full_after_the_table():
    """A long answer is shortened in its narrow table cell and printed in full, across the
    page width, after the table (so a 20,000-character remark is pages, not a paper strip)."""
    long = "Grease trap overflowing behind the fryer station. " * 100 + "TAIL-MARKER"
    data = inspection_pdf(
        _view([_item("remark", "Remarks", long), _item("floor", "Floor", "short answer")]), {}
    )
    _pages, text = _pdf_text(data)
    assert "TAIL-MARKER" in text
    assert "short answer" in text


# --- 2..5. compliance charts ------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures compliance_chart() saves, kept for inspection (legend, lines, titles)."""
    figures: list[Figure] = []
    real = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _rows(groups: int, days: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "site": f"s{i:04d}",
            "day": f"2026-11-{d + 1:02d}",
            "inspections_completed": i + 1,
            "pass_rate": 0.5,
            "average_score": 70,
        }
        for i in range(groups)
        for d in range(days)
    ]


def test_chart_requests_do_not_grow_the_process_font_list(api, completed):
    """Every chart called fontManager.addfont(): the process-wide font list grew by the CJK
    font's faces on every request, and findfont's cache was cleared each time. The font is
    registered once per process now."""
    from matplotlib import font_manager

    assert api.get(f"/reports/compliance.png?{PERIOD}", HQ_EMAIL).status_code == 200
    before = len(font_manager.fontManager.ttflist)
    for _ in range(5):
        assert api.get(f"/reports/compliance.png?{PERIOD}", HQ_EMAIL).status_code == 200
    assert len(font_manager.fontManager.ttflist) == before


def test_chart_font_registration_is_idempotent():
    """Even if the cached registration runs again (cache cleared, two first requests at
    once), the font is added to matplotlib's list only once."""
    from matplotlib import font_manager

    documents._chart_font_family()
    before = len(font_manager.fontManager.ttflist)
    documents._chart_font_family.cache_clear()
    family = documents._chart_font_family()
    assert len(font_manager.fontManager.ttflist) == before
    assert family[-1] == "DejaVu Sans"


MATH_NAMES = [
    "Room_1 $a_b_c$",  # mathtext: double subscript -> ValueError
    "Deli $" + "{" * 50 + "x" + "}" * 50 + "$",  # deeply nested braces -> RecursionError
    "Café $5 menu",  # a lone dollar
    r"$\frac{1}{0}$ \n",
]


@pytest.mark.parametrize("name", MATH_NAMES[:2])
def test_compliance_chart_renders_any_site_name(api, env, completed, name):
    """Site names are drawn as legend labels; matplotlib parsed $...$ in them as mathtext and
    a bad formula made /reports/compliance.png|svg a 500."""
    site = env["sites"]["N-HOTEL"]
    assert api.patch(f"/sites/{site}", HQ_EMAIL, json={"name": name}).status_code == 200
    assert api.get(f"/reports/compliance?{PERIOD}", HQ_EMAIL).get_json(), "no rows to chart"
    for fmt in ("png", "svg"):
        resp = api.get(f"/reports/compliance.{fmt}?{PERIOD}", HQ_EMAIL)
        assert resp.status_code == 200, (fmt, resp.status_code)


@pytest.mark.parametrize("fmt", ["png", "svg"])
@pytest.mark.parametrize("name", MATH_NAMES)
def test_chart_labels_are_drawn_as_given(drawn, name, fmt):
    """Any site/region/user/template name renders, literally: no mathtext."""
    rows = [{"site": "s1", "week": "2026-W45", "pass_rate": 0.5, "average_score": 70}]
    data = compliance_chart(rows, ["site", "week"], fmt, {"s1": name})
    assert data
    [drawn_label] = _legend_texts(drawn[-1])
    assert drawn_label == documents._legend_label(name) and "$" in drawn_label
    if len(name) <= documents.LEGEND_LABEL_WIDTH:
        assert drawn_label == name


def test_a_long_name_is_wrapped_in_the_legend(drawn):
    """The legend sits beside the chart: long names wrap onto at most three short lines."""
    name = "North Grand Hotel — Main Kitchen, Cold Room 3 (basement, east wing) " * 4
    rows = [{"site": "s1", "week": "2026-W45", "pass_rate": 0.5, "average_score": 70}]
    compliance_chart(rows, ["site", "week"], "png", {"s1": name})
    lines = _legend_texts(drawn[-1])[0].split("\n")
    assert 1 < len(lines) <= 3
    assert all(len(line) <= documents.LEGEND_LABEL_WIDTH for line in lines)
    assert lines[0] == "North Grand Hotel — Main"


def test_a_label_starting_with_an_underscore_is_in_the_legend(drawn):
    """matplotlib silently leaves labels starting with '_' out of a legend."""
    rows = [
        {"site": site, "week": "2026-W45", "pass_rate": 0.5, "average_score": 70}
        for site in ("s1", "s2")
    ]
    compliance_chart(rows, ["site", "week"], "png", {"s1": "_Kitchen", "s2": "Bar"})
    assert sorted(_legend_texts(drawn[-1])) == ["Bar", "_Kitchen"]


def test_a_failed_chart_does_not_leak_its_figure(monkeypatch):
    """A chart that failed while saving left its figure in pyplot's global registry (it was
    closed only on success): memory grew with every failure."""
    from matplotlib import pyplot as plt

    plt.close("all")

    def fail(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(RuntimeError):
        compliance_chart(_rows(2), ["site", "day"], "png", {})
    assert plt.get_fignums() == [], "pyplot still holds the figure of the failed request"


def test_a_chart_of_many_groups_is_capped(drawn):
    """1,000 groups were 1,000 lines and legend entries (seconds of drawing, an unreadable
    legend). The busiest groups (by inspections completed) are charted, the rest folded into
    one line, and the title says so."""
    compliance_chart(_rows(1000), ["site", "day"], "png", {})
    fig = drawn[-1]
    cap = documents.CHART_MAX_GROUPS
    labels = _legend_texts(fig)
    assert len(labels) == cap + 1
    assert len(fig.axes[0].lines) == cap + 1 and len(fig.axes[1].lines) == cap + 1
    # The busiest sites are the highest numbered ones (inspections_completed = i + 1).
    assert set(labels[:-1]) == {f"s{i:04d}" for i in range(1000 - cap, 1000)}
    assert f"{1000 - cap}" in labels[-1] and "Others" in labels[-1] and "其他" in labels[-1]
    assert fig.axes[0].lines[-1].get_linestyle() == "--", "the folded line stands apart"
    title = fig._suptitle.get_text()
    assert f"{cap}" in title and "1000" in title


def test_the_others_line_is_the_weighted_rate_of_the_rest(drawn):
    """The folded line is the pass rate of all inspections in the remaining groups, not an
    average of their rates."""
    cap = documents.CHART_MAX_GROUPS
    rows = [
        {"site": f"big{i:02d}", "day": "d1", "inspections_completed": 100, "pass_rate": 1.0}
        for i in range(cap)
    ] + [
        {"site": "small-a", "day": "d1", "inspections_completed": 3, "pass_rate": 0.0},
        {"site": "small-b", "day": "d1", "inspections_completed": 1, "pass_rate": 1.0},
    ]
    compliance_chart(rows, ["site", "day"], "png", {})
    fig = drawn[-1]
    others = fig.axes[0].lines[-1]
    assert list(others.get_ydata()) == [pytest.approx(25.0)]
    assert "2" in _legend_texts(fig)[-1]


def test_a_chart_at_the_cap_is_not_folded(drawn):
    cap = documents.CHART_MAX_GROUPS
    compliance_chart(_rows(cap), ["site", "day"], "png", {})
    fig = drawn[-1]
    assert len(_legend_texts(fig)) == cap
    assert not any("Others" in t for t in _legend_texts(fig))
    assert "Compliance summary" in fig._suptitle.get_text()
