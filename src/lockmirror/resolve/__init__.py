"""Choosing releases for a target: candidates, the resolvelib provider, sdist metadata,
policy, advisories.
"""
