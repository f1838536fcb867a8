"""The ``relay`` command. The composition root: the one place in :mod:`relay` that starts :mod:`workers`
(``serve``/``worker``/``dev``/``demo``), importing them inside the commands that run a worker."""
