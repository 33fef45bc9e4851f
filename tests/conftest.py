import sys
from pathlib import Path

# The independent reference of docs/algorithm.md lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
