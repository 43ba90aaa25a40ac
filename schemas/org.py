"""Regions, sites, users and site assignments."""

from __future__ import annotations

import zoneinfo

from marshmallow import ValidationError, fields, validate

from schemas.common import Id, Out, Pattern, Strict, Text
from store.enums import ROLES


def _valid_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Not a known IANA time zone, e.g. 'Asia/Shanghai'.") from None


CODE = Pattern(r"^[A-Za-z0-9_-]{1,32}$", error="Use 1-32 letters, digits, '-' or '_'.")


class RegionIn(Strict):
    """Create or replace a region."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    code = fields.String(required=True, validate=CODE)


class RegionPatch(Strict):
    """Change a region."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    code = fields.String(validate=CODE)


class RegionOut(Out):
    """A region."""

    id = fields.String()
    name = fields.String()
    code = fields.String()


class SiteIn(Strict):
    """Create a site."""

    region_id = Id(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    code = fields.String(required=True, validate=CODE)
    timezone = fields.String(load_default="Asia/Shanghai", validate=_valid_timezone)
    address = Text(500, allow_none=True)


class SitePatch(Strict):
    """Change a site."""

    region_id = Id()
    name = fields.String(validate=validate.Length(min=1, max=200))
    code = fields.String(validate=CODE)
    timezone = fields.String(validate=_valid_timezone)
    address = Text(500, allow_none=True)


class SiteOut(Out):
    """A site."""

    id = fields.String()
    region_id = fields.String()
    name = fields.String()
    code = fields.String()
    timezone = fields.String()
    address = fields.String(allow_none=True)
    server_rev = fields.Integer()


class SiteQuery(Strict):
    """Filters for the site list."""

    region_id = Id()


class UserIn(Strict):
    """Create a user."""

    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    region_id = Id(allow_none=True, load_default=None)
    password = fields.String(required=True, validate=validate.Length(min=10, max=1024))


class UserPatch(Strict):
    """Change a user."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    role = fields.String(validate=validate.OneOf(ROLES))
    region_id = Id(allow_none=True)
    password = fields.String(validate=validate.Length(min=10, max=1024))
    active = fields.Boolean()


class UserOut(Out):
    """A user (never the password hash)."""

    id = fields.String()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    region_id = fields.String(allow_none=True)
    active = fields.Boolean()


class UserQuery(Strict):
    """Filters for the user list."""

    role = fields.String(validate=validate.OneOf(ROLES))
    region_id = Id()


class AssignmentIn(Strict):
    """Give an inspector a site."""

    user_id = Id(required=True)
    site_id = Id(required=True)


class AssignmentOut(Out):
    """A live site assignment."""

    id = fields.String()
    user_id = fields.String()
    site_id = fields.String()


class AssignmentQuery(Strict):
    """Filters for the assignment list."""

    user_id = Id()
    site_id = Id()
