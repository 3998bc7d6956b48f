"""Built-in attribution methods; importing this package registers them."""

from . import gradient, integrated_gradients, grad_cam, occlusion  # noqa: F401
