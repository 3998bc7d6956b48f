"""Plain-Python code of the SaliencyMaps module: no qt, ctk or ScriptedLoadableModule imports (Qt code takes the ``qt`` module as an argument).

- :mod:`.nodes`: MRML node code (volume <-> engine image, output map volume,
  colour tables, display, foreground layer, segment -> region mask, saving).
  Works on any ``vtkMRMLScene``, so it is tested against ``slicer-core`` (real
  MRML from PyPI, no Qt) outside the application.
- :mod:`.params`: the method menu from the static catalogue, target parsing,
  the method parameter store.
- :mod:`.controls`: the PythonQt control of each method parameter, rendered
  from ``napari_xai.session.controls`` (the ``qt`` module is passed in).
- :mod:`.runs`: a run in a Python thread, polled by a ``qt.QTimer`` on the
  main thread (``napari_xai.session.background``).
- :mod:`.dependencies`: what is missing from Slicer's Python and how to
  install it (with the user's consent, never at import time).
- :mod:`.trust`: the trust metrics as a table node and in a map's provenance.
- :mod:`.views`: the few application-only steps (fitting slice views, screenshots).

The engine (``napari_xai.engine``, which imports torch) is imported lazily,
inside the functions that need it, so that importing this package never
needs torch.
"""
