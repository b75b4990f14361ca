#!/usr/bin/env python3
"""Reads PromQL expressions (a JSON list of strings on stdin), parses each with the Prometheus
query parser's Rust port (PyPI `promql-parser`) and prints, as JSON, the metric names each one
selects. Grafana's variables are replaced by values of their kind first (`$__rate_interval` by
a range, `$instance` by a regular expression). An expression that does not parse fails the
run with its error.

    echo '["sum(rate(router_publishes_total[5m]))"]' | python3 scripts/ops/promql_metrics.py
"""
import json
import re
import sys

import promql_parser

# Grafana's built-in and template variables, as a dashboard query can use them.
VARIABLES = [
    (re.compile(r"\$__(rate_interval|interval|range)\b"), "5m"),
    (re.compile(r"\$\{?\w+\}?"), ".*"),
]


def selected(node, names):
    """Collects the metric names of every vector selector below `node`."""
    if type(node).__name__ == "VectorSelector":
        names.add(node.name)
        return
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector", "args"):
        child = getattr(node, attribute, None)
        if child is None:
            continue
        for item in child if isinstance(child, list) else [child]:
            selected(item, names)


def main():
    expressions = json.load(sys.stdin)
    out = []
    for expression in expressions:
        text = expression
        for pattern, value in VARIABLES:
            text = pattern.sub(value, text)
        try:
            tree = promql_parser.parse(text)
        except ValueError as e:
            sys.exit(f"not PromQL: {expression!r}: {e}")
        names = set()
        selected(tree, names)
        out.append({"expr": expression, "metrics": sorted(names)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
