#!/usr/bin/env python3
"""Scrapes a router's /metrics as Prometheus does (its Accept header) and reads the answer with
the Prometheus client library's own text parser (PyPI `prometheus-client`). Prints one JSON
object: the content type, and every family with its type, help and samples
([name, labels, value]). A text the parser refuses fails with its error.

    python3 scripts/ops/prometheus_scrape.py http://127.0.0.1:8080/metrics
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# What Prometheus 2.x sends when it scrapes.
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
          "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def main():
    url = sys.argv[1]
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as answer:
        content_type = answer.headers.get("Content-Type")
        text = answer.read().decode("utf-8")
    families = []
    for family in text_string_to_metric_families(text):
        families.append({
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        })
    print(json.dumps({"content_type": content_type, "families": families}))


if __name__ == "__main__":
    main()
