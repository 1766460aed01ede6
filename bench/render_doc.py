#!/usr/bin/env python3
"""Pastes one bench/run.sh result into BENCHMARKS.md: the machine line and the key-figure table between the
`<!-- latest:begin -->` and `<!-- latest:end -->` markers, and the targets table, built from the same rows,
between `<!-- targets:begin -->` and `<!-- targets:end -->`. Nothing in either block is typed by hand.

    python3 bench/render_doc.py RESULTS.txt [BENCHMARKS.md]

A row is a target when its reference column says `target …`. Met: `target <= N` with no unit compares the
ratio with N (the RTU rows' ratio is cycle ÷ wire time), `target >= Nx` likewise from below; `target <= N unit` compares the ratio (measured ÷
target) with 1; `target <= Nx …` compares the ratio with N; `target N` with N below 10 compares the ratio with N (a ratio target, as 0.60 of the raw
signing rate), larger N compares measured ÷ target with 1.
"""
import re
import sys


def rows(results):
    """The header lines and the table rows of a results file (up to the first blank line after the table)."""
    lines = results.splitlines()
    header = [l for l in lines[:2]]
    start = next(i for i, l in enumerate(lines) if l.startswith("area "))
    table = []
    for l in lines[start:]:
        if not l.strip():
            break
        table.append(l)
    return header, table


def met(reference, ratio):
    m = re.match(r"target (<=|>=)?\s*([0-9.]+)(x?)\s*(\S*)", reference)
    if not m or not ratio:
        return None
    try:
        r = float(ratio.rstrip("x"))
    except ValueError:
        return None
    at_most, n, times, unit = m.group(1), float(m.group(2)), m.group(3), m.group(4)
    if at_most == "<=":
        return r <= (n if times or not unit else 1.0)
    if at_most == ">=":
        return r >= (n if times or not unit else 1.0)
    return r >= (n if n < 10 else 1.0)


def targets(table):
    """| figure | measured | reference | ratio | met | rows from the table's target rows (fixed columns as printed)."""
    out = ["| figure | measured | target | ratio | met |", "| --- | --- | --- | --- | --- |"]
    for line in table[1:]:
        # The last three columns are right-aligned in 16, 26 and 7 characters (bench/run.sh's printf): read from the end.
        ratio, reference, measured = line[-7:].strip(), line[-34:-8].strip(), line[-51:-35].strip()
        area, _, figure = line[:-52].strip().partition(" ")
        figure = figure.strip()
        if not reference.startswith("target"):
            continue
        ok = met(reference, ratio)
        out.append(f"| {area}: {figure} | {measured or '–'} | {reference[len('target '):]} | {ratio} | {'yes' if ok else 'no' if ok is not None else '?'} |")
    return out


def replace(doc, name, body):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    i, j = doc.index(begin) + len(begin), doc.index(end)
    return doc[:i] + "\n" + body + "\n" + doc[j:]


def main():
    results = open(sys.argv[1]).read()
    path = sys.argv[2] if len(sys.argv) > 2 else "BENCHMARKS.md"
    header, table = rows(results)
    latest = "\n".join([f"{header[0]}; {header[1]}.", "", "```", *[l.rstrip() for l in table], "```"])
    doc = open(path).read()
    doc = replace(doc, "latest", latest)
    doc = replace(doc, "targets", "\n".join(targets(table)))
    open(path, "w").write(doc)
    print(f"{path}: latest figures and targets pasted from {sys.argv[1]}")


if __name__ == "__main__":
    main()
