#!/usr/bin/env python3
"""The policies and principals `cloudsplaining scan` flags, per category, from the results file
it writes (iam-results-<name>.json), in the shape Brevet's comparison reads:

  {"<Category>": {"policies": [names], "principals": ["user:NAME" | "group:NAME" | "role:NAME"]}}

As cloudsplaining's own report counts them: a policy is flagged when its category has
findings; a principal when one of the policies attached to it directly is (its HTML report
does not pass group policies on to users); trust categories (`scan -t`) flag roles.

Usage: python cloudsplaining_sets.py RESULTS.json
"""
import json
import sys

POLICY = ["PrivilegeEscalation", "ResourceExposure", "DataExfiltration", "CredentialsExposure", "InfrastructureModification", "ServiceWildcard"]
TRUST = ["AssumableByComputeServices", "AssumableByCrossAccountPrincipal", "AssumableByAnyPrincipal", "AssumableByAnyPrincipalWithConditions"]


def main():
    with open(sys.argv[1]) as f:
        r = json.load(f)
    out = {c: {"policies": set(), "principals": set()} for c in POLICY + TRUST}
    flagged = lambda entry, c: entry.get("is_excluded") is not True and bool(entry.get(c, {}).get("findings"))
    inline = r.get("inline_policies", {})
    managed = {k: r.get(k, {}) for k in ("aws_managed_policies", "customer_managed_policies")}
    for pols in managed.values():
        for pol in pols.values():
            for c in POLICY:
                if flagged(pol, c):
                    out[c]["policies"].add(pol["PolicyName"])
    for kind, prefix in (("users", "user"), ("groups", "group"), ("roles", "role")):
        for p in r.get(kind, {}).values():
            cats = set()
            # Identical inline documents share one entry; each principal keeps its own name.
            for pid, name in p.get("inline_policies", {}).items():
                pol = inline.get(pid)
                for c in POLICY:
                    if pol and flagged(pol, c):
                        out[c]["policies"].add(name)
                        cats.add(c)
            for key, pols in managed.items():
                for pid in p.get(key, {}):
                    pol = pols.get(pid)
                    cats.update(c for c in POLICY if pol and flagged(pol, c))
            for c in cats:
                out[c]["principals"].add(f"{prefix}:{p['name']}")
            if kind == "roles":
                for c in TRUST:
                    if p.get(c, {}).get("findings"):
                        out[c]["principals"].add(f"role:{p['name']}")
    json.dump({c: {k: sorted(v) for k, v in d.items()} for c, d in out.items()}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
