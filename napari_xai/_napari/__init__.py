"""The napari plugin: manifest (napari.yaml), reader, writer, sample data and dock widget.

Logic lives in plain modules (``_layers``, ``_io``, ``_logic``); Qt widgets under ``_qt``.
Importing this package imports neither napari nor Qt.
"""
