#!/usr/bin/env python3
"""Downloads every page of one completed report to DIR/00001.json, DIR/00002.json, ...

Used by benches/e2e.sh to give DuckDB the very pages kargo-export reads (not timed).
Standard library only. Logs in with KARGO_USERNAME / KARGO_PASSWORD, follows links.next
(absolute or relative) until it is missing, null or "", and prints "<pages> <bytes> <gzip bytes>".

Pages are asked for as identity bytes (no Accept-Encoding), so DIR holds the plain JSON. With
--gzip, each page is asked for a second time with `Accept-Encoding: gzip`: the answer must be
`Content-Encoding: gzip` and inflate to exactly the identity bytes; <gzip bytes> is the sum of
those compressed bodies, as sent on the wire (0 without --gzip).

usage: e2e_fetch.py [--gzip] API_BASE REPORT_ID DIR
"""

import gzip
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


def get(url: str, token: str, accept_gzip: bool):
    """The body of a GET (as sent, not decoded) and its Content-Encoding."""
    headers = {"Authorization": "Bearer " + token}
    if accept_gzip:
        headers["Accept-Encoding"] = "gzip"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as reply:
        return reply.read(), reply.headers.get("Content-Encoding")


def main() -> None:
    args = sys.argv[1:]
    check_gzip = bool(args) and args[0] == "--gzip"
    if check_gzip:
        args = args[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    base, report, out = args
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
    pages = total = wire = 0
    while url:
        if url in seen:
            sys.exit(f"pagination loop at {url}")
        seen.add(url)
        body, encoding = get(url, token, accept_gzip=False)
        if encoding not in (None, "identity"):
            sys.exit(f"{url}: Content-Encoding {encoding} without Accept-Encoding")
        if check_gzip:
            packed, encoding = get(url, token, accept_gzip=True)
            if encoding != "gzip":
                sys.exit(f"{url}: Content-Encoding {encoding} for Accept-Encoding: gzip")
            if gzip.decompress(packed) != body:
                sys.exit(f"{url}: the gzip answer does not inflate to the identity answer")
            wire += len(packed)
        pages += 1
        total += len(body)
        with open(os.path.join(out, f"{pages:05}.json"), "wb") as page:
            page.write(body)
        link = next_link(body)
        url = urllib.parse.urljoin(url, link) if link else None
    print(pages, total, wire)


if __name__ == "__main__":
    main()
