"""The pipeline's stages (lock, fetch, index, check-install, bundle, import, verify, audit,
quarantine, diff, serve); their one entry each is in lockmirror.pipeline.
"""
