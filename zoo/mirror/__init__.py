"""Mirrors for offline and CI use: build and verify them (``build``), the places
their files live (``stores``: a directory or an fsspec URL), serve a directory
over HTTP (``serve``), and carry models across an air gap in one file
(``bundle``). Reading a mirror's index to plan a download is the fetch core's
job (zoo.sources); everything here builds on the fetch core, never the reverse.
"""

from zoo.mirror.build import BuiltFile, MirrorReport, build_mirror, merge_into_mirror, verify_mirror

__all__ = ["BuiltFile", "MirrorReport", "build_mirror", "merge_into_mirror", "verify_mirror"]
