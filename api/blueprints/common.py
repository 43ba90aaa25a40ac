"""Shared bits for blueprints: documented error responses, pagination, auth docs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import marshmallow as ma
from flask import current_app, g, request
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
AUTH = [{"bearerAuth": []}]


# The query parameters of paginate(), read by its own parser (_PageParser).
PAGE_KEYS = frozenset({"page", "page_size"})


def _view_doc() -> dict:
    """What flask-smorest recorded about the view of this request (arguments, pagination)."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, "_apidoc", None) or {}


def _has_query_arguments() -> bool:
    parameters = _view_doc().get("arguments", {}).get("parameters", [])
    return any(isinstance(p, dict) and p.get("in") == "query" for p in parameters)


class _Parser(FlaskParser):
    """webargs reading the body api.jsonio already parsed strictly, and query strings as
    strictly as bodies: an unknown (misspelt) parameter is a 422 naming it, not ignored."""

    # None: the schema's own Meta decides, and input schemas (Strict) raise on unknown keys
    # (webargs' default EXCLUDE would silently drop "?statsu=open"). A query schema that must
    # be lenient says so itself with Meta.unknown = EXCLUDE.
    DEFAULT_UNKNOWN_BY_LOCATION: ClassVar[dict[str, str | None]] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,
        "querystring": None,
    }

    def load_querystring(self, req: Any, schema: ma.Schema) -> Any:
        args = req.args
        if "pagination" in _view_doc():
            # page and page_size belong to paginate(), which reads them with its own parser.
            args = MultiDict([(k, v) for k, v in args.items(multi=True) if k not in PAGE_KEYS])
        return self._makeproxy(args, schema)

    def _raw_load_json(self, req: Any) -> Any:
        # webargs' own stdlib parse would accept what orjson refuses or cannot write back
        # (2**70 became a 500 when the answer was serialised).
        body = g.get("json_body")
        return super()._raw_load_json(req) if body is None else body


class _PageParser(FlaskParser):
    """paginate()'s parser. Its schema ignores other keys (they are the view's filters); on a
    list with no query arguments of its own, nothing but page and page_size is accepted."""

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        if not _has_query_arguments():
            kwargs["unknown"] = ma.RAISE
        return super().parse(*args, **kwargs)


class _Blueprint(Blueprint):
    """A smorest blueprint parsing JSON bodies with the app's one parser."""

    ARGUMENTS_PARSER = _Parser()
    PAGINATION_ARGUMENTS_PARSER = _PageParser()


def make_blueprint(name: str, url_prefix: str, description: str) -> Blueprint:
    """A smorest blueprint with our pagination defaults."""
    blp = _Blueprint(name, __name__, url_prefix=url_prefix, description=description)
    blp.DEFAULT_PAGINATION_PARAMETERS = {
        "page": 1,
        "page_size": DEFAULT_PAGE_SIZE,
        "max_page_size": MAX_PAGE_SIZE,
    }
    return blp


def documented(blp: Blueprint, *codes: int, auth: bool = True) -> Callable:
    """Document the error responses a view can give (and its bearer auth)."""

    def decorator(func: Callable) -> Callable:
        for code in codes:
            func = blp.alt_response(
                code, response="DEFAULT_ERROR", description=_DESCRIPTIONS[code]
            )(func)
        if auth:
            func = blp.doc(security=AUTH)(func)
        return func

    return decorator


def csv_alternative(blp: Blueprint) -> Callable:
    """Document text/csv next to the JSON of the 200 answer (format=csv or Accept: text/csv)."""
    return blp.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})


def binary_content(blp: Blueprint, *mimes: str) -> Callable:
    """Document the media types a 200 answer of raw bytes can have."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return blp.doc(responses={200: {"content": {mime: binary for mime in mimes}}})


def wants_csv(query: dict) -> bool:
    """CSV when asked with format=csv or Accept: text/csv."""
    from flask import request

    return query.get("format") == "csv" or (
        request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
    )


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: None empty, text that a spreadsheet would run kept as text."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_response(rows: list[dict], columns: list[str] | tuple[str, ...], name: str) -> Any:
    """A CSV download with a header row; None becomes an empty cell."""
    import csv
    import io

    from flask import Response

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={name}.csv"},
    )


def page(pagination: PaginationParameters, fetch: Callable[[int, int], tuple[list, int]]) -> Any:
    """Run a paged fetch and record the total for the X-Pagination header."""
    items, total = fetch(pagination.page, pagination.page_size)
    pagination.item_count = total
    return items


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Not signed in, or the token is invalid or expired",
    403: "Not allowed for this user",
    404: "Not found, or outside the user's scope",
    409: "Conflicts with the current state",
    413: "Body too large",
    422: "Invalid fields (named in 'errors')",
    429: "Rate limited",
    503: "A dependency is unavailable; retry after Retry-After seconds",
}
