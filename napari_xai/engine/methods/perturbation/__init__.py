"""Perturbation methods: what the score does when parts of the scan are replaced."""

from . import occlusion  # noqa: F401
from . import lime  # noqa: F401
from . import kernel_shap  # noqa: F401
from . import rise  # noqa: F401
from . import hipe  # noqa: F401
from . import meaningful_perturbation  # noqa: F401
from . import extremal_perturbation  # noqa: F401
