"""Course studies as one-line commands: ``python -m src.study <study> ...`` writes ``reports/<study>/``.

Each study is a module of this package with ``STUDIES`` (the sub-command names it answers),
``add_arguments(ap, name)`` and ``run(args) -> Path`` (the report folder). The studies build on the
stages (``src.train``, ``src.tune``'s grid, ``src.features``, ``src.compare``): none keeps a second
copy of a training loop or a grid. Shared output helpers live in :mod:`src.study.report`.
"""
