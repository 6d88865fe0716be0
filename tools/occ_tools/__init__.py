"""Tools: the ``occ`` command line, ``occ predict`` and ``occ demo`` (the top layer: may import every package)."""
