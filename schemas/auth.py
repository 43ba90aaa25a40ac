"""Login, refresh and current-user wire formats."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import Out, Strict
from store.enums import ROLES


class LoginIn(Strict):
    """Credentials."""

    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class RefreshIn(Strict):
    """A refresh token to spend."""

    refresh_token = fields.String(required=True, validate=validate.Length(min=10, max=4096))


class UserBrief(Out):
    """The signed-in user as the login answer carries it."""

    id = fields.String()
    email = fields.String()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(ROLES))
    region_id = fields.String(allow_none=True)


class TokensOut(Out):
    """A token pair."""

    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()
    user = fields.Nested(UserBrief)


class ScopeOut(Out):
    """What the user may see."""

    all_sites = fields.Boolean()
    regions = fields.List(fields.Dict())
    sites = fields.List(fields.Dict())


class MeOut(UserBrief):
    """The current user with role and scope."""

    scope = fields.Nested(ScopeOut)
