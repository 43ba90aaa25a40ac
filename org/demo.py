"""The demo organisation of api.md: two regions, four sites, five accounts, the library."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from org import catalog
from store.enums import HQ
from store.models import Base, Region, Site, SiteAssignment, SyncCounter, User
from sync.scope import Scope

REGIONS = [("North", "N"), ("South", "S")]
SITES = [
    # code, region code, name, timezone, address
    ("N-HOTEL", "N", "North Grand Hotel 北方大酒店", "Asia/Shanghai", "1 Harbour Road, Dalian"),
    (
        "N-CANTEEN",
        "N",
        "North Campus Canteen 北区员工食堂",
        "Asia/Shanghai",
        "88 Park Lane, Shenyang",
    ),
    ("S-HOTEL", "S", "South Bay Hotel 南湾酒店", "Asia/Shanghai", "12 Bay Street, Shenzhen"),
    ("S-STORE", "S", "South Plaza Store 南广场门店", "Asia/Shanghai", "3 Plaza Road, Guangzhou"),
]
ACCOUNTS = [
    # email, name, role, region code, assigned site codes
    ("hq@demo.example", "Hana Qiu 邱华", "hq", None, []),
    ("north.manager@demo.example", "Nora Meng 孟诺", "regional_manager", "N", []),
    ("south.manager@demo.example", "Sam Mo 莫森", "regional_manager", "S", []),
    ("ana.inspector@demo.example", "Ana Li 李安娜", "inspector", "N", ["N-HOTEL", "N-CANTEEN"]),
    ("ben.inspector@demo.example", "Ben Wang 王斌", "inspector", None, ["N-HOTEL", "S-HOTEL"]),
]


def is_empty(db: Session) -> bool:
    """True when no user exists yet."""
    return db.execute(select(User.id).limit(1)).first() is None


def wipe(db: Session) -> None:
    """Delete every row (demo re-creation only), children first; keep the rev counter."""
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != SyncCounter.__tablename__:
            db.execute(table.delete())


def seed(db: Session, hash_password: Callable[[str], str], password: str) -> dict[str, str]:
    """Create the demo organisation; returns account emails -> user ids."""
    regions = {code: Region(name=name, code=code) for name, code in REGIONS}
    db.add_all(regions.values())
    db.flush()
    sites = {}
    for code, region_code, name, tz, address in SITES:
        sites[code] = Site(
            region_id=regions[region_code].id, name=name, code=code, timezone=tz, address=address
        )
    db.add_all(sites.values())
    db.flush()
    hashed = hash_password(password)
    users = {}
    for email, name, role, region_code, site_codes in ACCOUNTS:
        user = User(
            email=email,
            name=name,
            role=role,
            password_hash=hashed,
            region_id=regions[region_code].id if region_code else None,
        )
        db.add(user)
        db.flush()
        users[email] = user.id
        for code in site_codes:
            db.add(SiteAssignment(user_id=user.id, site_id=sites[code].id))
    db.flush()
    hq = Scope(user_id=users["hq@demo.example"], role=HQ, region_id=None, site_ids=None)
    catalog.install_library(db, hq)
    return users
