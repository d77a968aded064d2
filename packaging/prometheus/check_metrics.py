#!/usr/bin/env python3
"""Every metric an alerting rule reads is one ccm exports: each `ccm_*` name in the rules'
expressions (less a histogram's _bucket/_sum/_count) must appear in src/ as the name ccm
writes on /metrics. Exit 1 naming the unknown ones; a renamed metric then fails here instead
of silencing its alert.

Usage: check_metrics.py RULES_YAML SRC_DIR"""
import os
import re
import sys

import yaml

rules = yaml.safe_load(open(sys.argv[1]))
used = set()
for group in rules["groups"]:
    for rule in group["rules"]:
        used |= set(re.findall(r"\bccm_[a-z_]+", rule["expr"]))
used = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
exported = set()
for folder, _, files in os.walk(sys.argv[2]):
    for f in files:
        if f.endswith((".cc", ".h")):
            exported |= set(re.findall(r'"(ccm_[a-z_]+)', open(os.path.join(folder, f)).read()))
unknown = sorted(used - exported)
if unknown:
    sys.exit(f"check_metrics: the rules read metrics ccm does not export: {', '.join(unknown)}")
print(f"check_metrics: ok ({len(used)} metrics: {', '.join(sorted(used))})")
