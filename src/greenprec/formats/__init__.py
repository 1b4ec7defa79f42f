"""File formats of other tools that greenprec reads (``energibridge_csv``: EnergiBridge's CSV).

A reader here turns one file into energies per domain and samples; the ``energibridge`` meter
(:mod:`greenprec.meters.energibridge`) and the importer (:mod:`greenprec.importers`) both use it,
so a file gives the same numbers whichever way it comes in.
"""
