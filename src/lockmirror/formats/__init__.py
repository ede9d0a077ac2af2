"""Bytes on disk, no network: lockfiles, manifests, pages, the store, bundles, signatures,
core metadata.
"""
