"""What every host does the same way, without napari, Qt or Slicer: models, jobs, runs, controls, checks.

napari (``napari_xai/_napari``), the Slicer module (``slicer_module``) and
the command lines build on this layer; it imports only the engine
(docs/architecture.md, Layers). Import the submodules:

- :mod:`.models`: the bundled sample models, the lock-guarded model cache;
- :mod:`.jobs`: :class:`~.jobs.Job`, the run of a list of jobs, estimates, the target menu;
- :mod:`.slices`: 2D models on a slice of a volume;
- :mod:`.run_state`: a run's phase, estimate question, progress and cancel;
- :mod:`.background`: a run in a Python thread polled by the host's main thread;
- :mod:`.controls`: the control of each method parameter;
- :mod:`.checks`: a map's checks as text;
- :mod:`.methods`: the method menu.
"""
