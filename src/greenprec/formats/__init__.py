"""File formats of other tools that greenprec reads (``energibridge_csv``: EnergiBridge's CSV).

A reader here turns one file into energies per domain and samples; the ``energibridge`` meter
(:mod:`greenprec.meters.energibridge`) and the importer (:mod:`greenprec.importers`) both use it,
so a file gives the same numbers whichever way it comes in.
"""

# A namespace: each reader is imported by its module (importing one here would load it, and
# its dependencies, for every user of the package).
__all__: list[str] = []
