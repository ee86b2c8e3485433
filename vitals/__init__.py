"""The shared vocabulary of infusion-monitor: readings, records, topics, settings and stores.

Nothing here imports from the role packages (ingest, simulator, dashboard).
"""
