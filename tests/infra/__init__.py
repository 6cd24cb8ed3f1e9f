"""testinfra checks that `inv check` runs against an inventory (see conftest.py)."""
