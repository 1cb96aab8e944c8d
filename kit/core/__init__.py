"""Foundations every stage uses: errors, names (validated before they become paths or keys),
the data root, atomic files, locks, platforms, versions and the settings object."""
