import sys
from pathlib import Path

# The tests share their in-memory fakes (gateway_fakes.py) from this folder.
sys.path.insert(0, str(Path(__file__).parent))
