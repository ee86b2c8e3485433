"""The nurse-station dashboard: live chair overview, chair trends, alarm panel, login (docs/dashboard.md)."""
