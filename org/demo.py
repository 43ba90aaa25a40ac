"""The demo organisation of api.md: two regions, four sites, five accounts, the library."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspections import schedule_service
from org import catalog
from store.enums import HQ
from store.models import Base, Region, Site, SiteAssignment, SyncCounter, Template, User
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
    _schedules(db, hq, sites, users)
    return users


def _schedules(db: Session, hq: Scope, sites: dict[str, Site], users: dict[str, str]) -> None:
    """The seeds' rhythms for the coming weeks: room status 3x a day, daily hygiene, weekly 5S."""
    drafts = {t.template_key: t.id for t in db.execute(select(Template)).scalars()}
    ana, ben = users["ana.inspector@demo.example"], users["ben.inspector@demo.example"]
    plans = [
        (
            "room_status_check",
            "N-HOTEL",
            [ana, ben],
            {"freq": "daily", "times": ["08:00", "14:00", "18:00"]},
        ),
        ("hotel_room_hygiene", "S-HOTEL", [ben], {"freq": "daily", "times": ["10:00"]}),
        ("canteen_food_handler_hygiene", "N-CANTEEN", [ana], {"freq": "daily", "times": ["10:30"]}),
        ("five_s", "N-CANTEEN", [ana], {"freq": "weekly", "weekdays": ["MO"], "times": ["15:00"]}),
        (
            "safety_walkthrough",
            "S-STORE",
            [],
            {"freq": "quarterly", "monthday": 1, "times": ["09:00"]},
        ),
    ]
    for key, site_code, assignees, recurrence in plans:
        schedule_service.create(
            db,
            hq,
            {
                "template_id": drafts[key],
                "site_id": sites[site_code].id,
                "assignee_ids": assignees,
                "recurrence": recurrence,
            },
        )
