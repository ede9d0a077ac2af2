"""The network: one HTTP session, project pages, metadata by Range, downloads into the
store, OSV.
"""
