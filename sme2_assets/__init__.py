"""The Dagster code location: thin asset, sensor, schedule and check definitions over `kit`."""
