#!/usr/bin/env python3
"""Downloads every page of one completed report to DIR/00001.json, DIR/00002.json, ...

Used by benches/e2e.sh to give DuckDB the very pages kargo-export reads (not timed).
Standard library only. Logs in with KARGO_USERNAME / KARGO_PASSWORD, follows links.next
(absolute or relative) until it is missing, null or "", and prints "<pages> <bytes>".

usage: e2e_fetch.py API_BASE REPORT_ID DIR
"""

import json
import os
import sys
import urllib.parse
import urllib.request


def next_link(body: bytes):
    """links.next of a page; reads only the tail when the page ends with its links."""
    at = body.rfind(b'"links":')
    if at >= 0:
        try:
            return json.loads(b"{" + body[at:]).get("links", {}).get("next")
        except ValueError:
            pass
    return json.loads(body).get("links", {}).get("next")


def main() -> None:
    base, report, out = sys.argv[1:4]
    base = base.rstrip("/")
    credentials = {"username": os.environ["KARGO_USERNAME"], "password": os.environ["KARGO_PASSWORD"]}
    login = urllib.request.Request(
        base + "/v1/auth/token",
        data=json.dumps(credentials).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login) as reply:
        answer = json.load(reply)
    token = answer.get("access_token") or answer.get("token") or answer["accessToken"]
    url = base + "/v1/completed-reports/" + urllib.parse.quote(report, safe="")
    seen = set()
    pages = total = 0
    while url:
        if url in seen:
            sys.exit(f"pagination loop at {url}")
        seen.add(url)
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(request) as reply:
            body = reply.read()
        pages += 1
        total += len(body)
        with open(os.path.join(out, f"{pages:05}.json"), "wb") as page:
            page.write(body)
        link = next_link(body)
        url = urllib.parse.urljoin(url, link) if link else None
    print(pages, total)


if __name__ == "__main__":
    main()
