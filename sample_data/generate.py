#!/usr/bin/env python3
"""Generates the sandbox sample data of kargo-export (see README.md in this folder).

Deterministic: a fixed seed and no clock, so running it again rewrites the same bytes.
Python 3.11+, standard library only.  Run from anywhere:  python3 sample_data/generate.py
"""

import json
import random
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

SEED = 20250301
OUT = Path(__file__).resolve().parent
START = date(2025, 3, 1)
DAYS = 30

REPORT_BY_DAY = "rpt_7f3a9c21"
REPORT_BY_SITE = "rpt_2b8e4d10"
REPORT_EMPTY = "rpt_e5d90a47"

ADVERTISERS = [
    # advertiser_id, name, currency, conversion tracking
    (10231, "Northwind Outdoor", "USD", True),
    (10457, "Maison Lumière", "EUR", True),
    (11802, "Sakura Beverages", "USD", False),
    (12093, "Brightline Telecom", "USD", True),
    (13340, "Bäckerei Müller GmbH", "EUR", False),
]

CAMPAIGNS = [
    # campaign_id, advertiser_id, name
    (500112, 10231, "Spring Trail Gear 2025"),
    (500118, 10231, "Ñandú Jackets – Always On"),
    (500207, 10457, "Café Crème – Printemps"),
    (500213, 10457, "Soldes d'été: Élégance"),
    (500342, 11802, "東京 Spring Launch"),
    (500351, 11802, "Matcha Fizz 🍵 Sampling"),
    (500488, 12093, "5G Switch & Save"),
    (500490, 12093, "Summer Sale 🌞 Unlimited"),
    (500601, 13340, "Herbstbrot Kampagne"),
]

SIZES = ["300x250", "728x90", "160x600", "320x50", "300x600", "970x250"]
DEVICES = ["desktop", "mobile", "tablet", "ctv"]
COUNTRIES = ["US", "US", "US", "CA", "GB", "DE", "FR", "JP", "BR", "AU"]
SITES = [
    ("news.example.com", "Example News Group"),
    ("weather.example.net", "Example Weather"),
    ("recipes.example.org", "Example Kitchen"),
    ("sports.example.com", "Example Sports Media"),
    ("travel.example.co.uk", "Example Travel Ltd"),
    ("tech.example.io", "Example Tech Daily"),
    ("finance.example.com", "Example Finance"),
    ("games.example.gg", "Example Games"),
    ("music.example.fm", "Example Radio"),
    ("autos.example.com", "Example Motors Media"),
    ("health.example.org", "Example Health"),
    ("style.example.fr", "Exemple Style"),
    ("kids.example.com", "Example Family"),
    ("video.example.tv", "Example Streaming"),
    ("local.example.us", "Example Local"),
    ("science.example.edu", "Example Science"),
    ("home.example.com", "Example Home & Garden"),
    ("pets.example.net", "Example Pets"),
    ("books.example.de", "Beispiel Bücher"),
    ("anime.example.jp", "例 アニメ"),
]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_rows(path: Path, rows: list) -> None:
    """A JSON array with one compact row per line: small, diff-friendly, served byte-exact."""
    lines = [json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in rows]
    path.write_text("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n", encoding="utf-8")


def line_items(rng: random.Random) -> list:
    """Two or three line items per campaign, each with its creatives."""
    items = []
    for campaign_id, advertiser_id, _ in CAMPAIGNS:
        for n in range(rng.randint(2, 3)):
            line_item_id = campaign_id * 10 + n + 1
            creatives = [
                (line_item_id * 100 + c + 1, rng.choice(SIZES)) for c in range(rng.randint(1, 3))
            ]
            items.append((advertiser_id, campaign_id, line_item_id, creatives))
    return items


def delivery_by_day(rng: random.Random) -> list:
    advertisers = {a[0]: a for a in ADVERTISERS}
    campaigns = {c[0]: c for c in CAMPAIGNS}
    items = line_items(rng)
    rows = []
    for day in range(DAYS):
        day_date = START + timedelta(days=day)
        midnight = datetime(day_date.year, day_date.month, day_date.day, tzinfo=timezone.utc)
        picks = set()
        while len(picks) < 50:
            advertiser_id, campaign_id, line_item_id, creatives = rng.choice(items)
            creative_id, size = rng.choice(creatives)
            picks.add((advertiser_id, campaign_id, line_item_id, creative_id, size,
                       rng.choice(SITES)[0], rng.choice(DEVICES)))
        for advertiser_id, campaign_id, line_item_id, creative_id, size, site, device in sorted(picks):
            _, advertiser_name, currency, tracks_conversions = advertisers[advertiser_id]
            impressions = int(rng.lognormvariate(8.5, 1.2)) + 1
            viewable = int(impressions * rng.uniform(0.38, 0.82))
            clicks = int(impressions * rng.uniform(0.0005, 0.02))
            conversions = int(clicks * rng.uniform(0.0, 0.12)) if tracks_conversions else None
            cpm_target = rng.uniform(0.8, 14.0)
            spend = round(impressions * cpm_target / 1000, rng.randint(2, 6))
            first_seen = midnight + timedelta(seconds=rng.randint(0, 3 * 3600))
            updated = midnight + timedelta(days=1, seconds=rng.randint(2 * 3600, 8 * 3600))
            rows.append({
                "date": day_date.isoformat(),
                "advertiser_id": advertiser_id,
                "advertiser_name": advertiser_name,
                "campaign_id": campaign_id,
                "campaign_name": campaigns[campaign_id][2],
                "line_item_id": line_item_id,
                "creative_id": creative_id,
                "creative_size": size,
                "site_domain": site,
                "device_type": device,
                "country": None if rng.random() < 0.04 else rng.choice(COUNTRIES),
                "impressions": impressions,
                "viewable_impressions": viewable,
                "clicks": clicks,
                "conversions": conversions,
                "spend": spend,
                "currency": currency,
                "cpm": round(spend / impressions * 1000, 4),
                "ctr": round(clicks / impressions, 6),
                "first_seen_at": rfc3339(first_seen),
                "last_updated_at": rfc3339(updated),
            })
    return rows


def delivery_by_site(rng: random.Random) -> list:
    """20 sites a day for 30 days. Deals start on day 11, so deal_id is null on the first 200 rows."""
    rows = []
    deal_ids = {site: f"PMP-{rng.randint(1000, 9999)}-{site.split('.')[0].upper()}" for site, _ in SITES}
    for day in range(DAYS):
        day_date = START + timedelta(days=day)
        for index, (site, publisher) in enumerate(SITES):
            impressions = int(rng.lognormvariate(10.0, 0.9)) + 1
            in_deal = day >= 10 and (index == 0 or rng.random() < 0.75)
            rows.append({
                "date": day_date.isoformat(),
                "site_domain": site,
                "publisher_name": publisher,
                "deal_id": deal_ids[site] if in_deal else None,
                "device_type": rng.choice(DEVICES),
                "impressions": impressions,
                "clicks": int(impressions * rng.uniform(0.0005, 0.015)),
                "spend": round(impressions * rng.uniform(1.0, 9.0) / 1000, rng.randint(2, 6)),
                "viewability_rate": None if rng.random() < 0.12 else round(rng.uniform(0.35, 0.9), 4),
            })
    return rows


def reports(counts: dict) -> list:
    day_dims = ["date", "advertiser", "campaign", "line_item", "creative", "site_domain",
                "device_type", "country"]
    day_metrics = ["impressions", "viewable_impressions", "clicks", "conversions", "spend", "cpm", "ctr"]
    site_dims = ["date", "site_domain", "publisher", "deal", "device_type"]
    site_metrics = ["impressions", "clicks", "spend", "viewability_rate"]

    def report(rid, rtype, status, created, completed, start, end, who, dims, metrics):
        return {
            "id": rid,
            "report_type": rtype,
            "status": status,
            "created_at": created,
            "completed_at": completed,
            "date_range": {"start": start, "end": end},
            "requested_by": who,
            "dimensions": dims,
            "metrics": metrics,
            "row_count": counts.get(rid),
        }

    return [
        report(REPORT_BY_DAY, "delivery_by_day", "completed", "2025-04-01T08:15:02Z",
               "2025-04-01T08:21:47Z", "2025-03-01", "2025-03-30", "ana.silva@example.com",
               day_dims, day_metrics),
        report(REPORT_BY_SITE, "delivery_by_site", "completed", "2025-04-01T08:16:40Z",
               "2025-04-01T08:19:05Z", "2025-03-01", "2025-03-30", "ana.silva@example.com",
               site_dims, site_metrics),
        report("rpt_4c1e88b3", "delivery_by_day", "failed", "2025-04-02T13:02:11Z", None,
               "2024-01-01", "2025-03-31", "jonas.weber@example.com", day_dims, day_metrics),
        report(REPORT_EMPTY, "delivery_by_site", "completed", "2025-04-03T09:30:00Z",
               "2025-04-03T09:30:41Z", "2025-02-01", "2025-02-07", "jonas.weber@example.com",
               site_dims, site_metrics),
        report("rpt_a09b6f5d", "delivery_by_site", "pending", "2025-04-05T17:44:58Z", None,
               "2025-04-01", "2025-04-04", "mei.tanaka@example.com", site_dims, site_metrics),
        report("rpt_0d72c3e1", "delivery_by_day", "pending", "2025-04-05T17:45:20Z", None,
               "2025-04-01", "2025-04-04", "mei.tanaka@example.com", day_dims, day_metrics),
    ]


def main() -> None:
    by_day = delivery_by_day(random.Random(SEED))
    by_site = delivery_by_site(random.Random(SEED + 1))
    completed = {REPORT_BY_DAY: by_day, REPORT_BY_SITE: by_site, REPORT_EMPTY: []}
    (OUT / "completed-reports").mkdir(exist_ok=True)
    for report_id, rows in completed.items():
        write_json_rows(OUT / "completed-reports" / f"{report_id}.json", rows)
    counts = {rid: len(rows) for rid, rows in completed.items()}
    (OUT / "reports.json").write_text(
        json.dumps(reports(counts), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
