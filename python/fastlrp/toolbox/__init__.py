"""A drop-in for the numpy LRP toolbox (lrp_toolbox ``python/``), computed by fastlrp.

Switch a toolbox script by changing its imports::

    from fastlrp.toolbox import model_io, data_io, modules

``model_io`` reads and writes the toolbox's text and ``.nn`` files (the latter safely),
``data_io`` its data files, ``modules`` has its layer classes. Rules follow the toolbox's
conventions (``docs/rules.md``, "Toolbox convention"), in float64; NHWC images as the toolbox.
``model.to_sequential()`` gives the native :class:`fastlrp.Sequential`.
"""

from . import data_io, model_io, modules

__all__ = ["data_io", "model_io", "modules"]
