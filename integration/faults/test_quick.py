"""Issue 16: the CI-sized run of the fault scenarios (scripts/faults --quick), as a ctest entry. Needs root for the
network namespaces: without them it fails, saying why (CI runs as root), it does not pass. CNODE_FAULTS_SEED
fixes the seed (random and printed otherwise)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

seed = os.environ.get("CNODE_FAULTS_SEED")
sys.exit(run.main(["--quick"] + (["--seed", seed] if seed else [])))
