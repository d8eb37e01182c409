"""``python -m hf_vssl.data.prepare``: see :mod:`hf_vssl.data.prepare`."""

from .run import main

main()
