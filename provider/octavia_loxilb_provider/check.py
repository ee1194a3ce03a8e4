"""`python -m octavia_loxilb_provider.check`: is this the only `loxilb` provider octavia-api can load?

The earlier LoxiLB driver (`octavia-loxilb-driver`, 1.0.x and 1.1.0) registers the same entry point name,
`loxilb` under `octavia.api.drivers`. With both installed, stevedore finds two and octavia-api refuses
every `--provider loxilb` request before any provider code runs, so the check has to be a command the
operator runs in octavia-api's virtualenv (exit 0: only this package; 1: others too, named).
"""
import sys
from importlib import metadata

GROUP = "octavia.api.drivers"
NAME = "loxilb"
OURS = "octavia-loxilb-provider"


def _normalize(name):
    return name.lower().replace("_", "-").replace(".", "-")


def registrations():
    """(distribution, entry point value) for every `loxilb` provider installed."""
    found = []
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == GROUP and ep.name == NAME:
                found.append((dist.metadata["Name"], ep.value))
    return sorted(set(found))


def main():
    found = registrations()
    others = [(d, v) for d, v in found if _normalize(d) != OURS]
    for dist, value in found:
        print(f"{GROUP}: {NAME} = {value}  ({dist})")
    if not any(_normalize(d) == OURS for d, _ in found):
        print(f"{OURS} is not installed in this environment ({sys.prefix})")
        return 1
    if others:
        names = ", ".join(sorted({d for d, _ in others}))
        print(f"conflict: {names} also register{'s' if len(others) == 1 else ''} the '{NAME}' provider; "
              f"octavia-api cannot load either. Remove it from this environment: pip uninstall {names}")
        return 1
    print("ok: octavia-api will load this package's loxilb provider")
    return 0


if __name__ == "__main__":
    sys.exit(main())
