"""Read a `pip install --dry-run --report PLAN.json` and fail when it would replace a package that is
already installed: installing labkit into a Colab or Kaggle runtime must add packages, never upgrade
or downgrade the runtime's own (torch, numpy, scikit-learn, ...).

Usage: python .ci/no_upgrades.py PLAN.json   (run with the Python of the environment that was planned for)
"""

import json
import sys
from importlib.metadata import distributions


def main(plan_path: str) -> int:
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in distributions()}
    plan = json.load(open(plan_path))
    changes, added = [], []
    for item in plan["install"]:
        name = item["metadata"]["name"].lower().replace("_", "-")
        version = item["metadata"]["version"]
        if name == "labkit":
            continue
        if name in installed:
            changes.append(f"{name} {installed[name]} -> {version}")
        else:
            added.append(f"{name} {version}")
    print(f"installing labkit adds {len(added)} package(s): {', '.join(added) or 'none'}")
    if changes:
        print("and would REPLACE what the runtime ships: " + "; ".join(changes), file=sys.stderr)
        return 1
    print("and replaces none of the runtime's packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
