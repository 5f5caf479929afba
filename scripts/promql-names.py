#!/usr/bin/env python3
"""Reads PromQL expressions, one JSON string a line, on stdin; prints the metric names each one selects, one
"name<TAB>expression" a line. A small tokenizer, not a parser (the expressions are checked to parse by
promtool separately): it drops strings, label matchers, ranges, grouping label lists and numbers, and keeps
the identifiers that are neither functions nor keywords."""
import json
import re
import sys

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan", "atan2", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk",
            "bottomk", "quantile", "count_values", "group"}
# Label lists after these keywords name labels, not metrics.
LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")

for line in sys.stdin:
    expr = json.loads(line)
    text = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = LABEL_LISTS.sub(" ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        rest = text[m.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        # Part of a number such as 1e3 or a duration such as 5m.
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue
        names.add(word)
    for name in sorted(names):
        print(f"{name}\t{expr}")
