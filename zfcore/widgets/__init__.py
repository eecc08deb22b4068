"""The explorer (notebook 12): turn the paper's knobs yourself, as in the DeepVis toolbox.

Pick a profile and model, a layer (1-7), a feature map and an image (a scene of the data set, a
scikit-image sample photo or your own file); the explorer shows the layer's activation grid, the
selected map, the projection of its strongest activation to pixels (the deconvnet of section 2.1,
Fig. 1; guided backpropagation; the gradient), the map's top-9 over the validation set (Fig. 2) and,
on request, the occlusion map of the image (section 4.2, Fig. 7).

The package is split by job, each module readable on its own:

* :mod:`~zfcore.widgets.state`: the choices (:data:`RULES`, :data:`SOURCES`),
  :class:`ExplorerState` and :class:`ExplorerError`;
* :mod:`~zfcore.widgets.session`: :class:`ExplorerSession`, the state and every panel as a numpy
  image, headless (no ipywidgets; tests and scripts use it alone);
* :mod:`~zfcore.widgets.view`: :class:`Explorer`, the ipywidgets app that draws the session's
  panels and wires its controls to the session (ipywidgets is imported only when one is built);
* :mod:`~zfcore.widgets.tour`: :func:`scripted_tour` and :class:`Timings`, the explorer driven
  like a user and timed (notebook 12 and ``benchmarks/explorer.py``).

The object-focus measure driven through a session is an analysis of its own,
:func:`zfcore.focus.object_focus`.

Launch it in JupyterLab (``notebooks/12_explorer.ipynb``) or as a web app with Voila::

    voila notebooks/12_explorer.ipynb
"""

from .session import ExplorerSession
from .state import RULES, SOURCES, ExplorerError, ExplorerState
from .tour import Timings, scripted_tour
from .view import Explorer

__all__ = [
    "ExplorerError",
    "ExplorerState",
    "ExplorerSession",
    "Explorer",
    "SOURCES",
    "RULES",
    "Timings",
    "scripted_tour",
]
